"""The protocol chain over real loopback sockets: detection, layers, claims, refusals.

A small line protocol (``HELLO`` → ``client=host:port``) stands in for a terminal
protocol; the PROXY layer is the built-in one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any

import pytest

from covet_pipe import PluginManager
from covet_pipe.builtin import ProxyProtocol
from covet_pipe.builtin.proxy_protocol import V2_SIGNATURE
from covet_pipe.plugin import ProtocolPlugin
from covet_pipe.protocol import MATCH, NEED_MORE, NO, ConnectionInfo, ProtocolError, ServerContext
from covet_pipe.server.protocol_chain import Detector, ProtocolChain


class _LineConn(asyncio.Protocol):
    def __init__(self, conn: ConnectionInfo, tag: str) -> None:
        self.conn, self.tag, self.buf = conn, tag, b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            host, port = self.conn.client
            self.transport.write(f"{self.tag} {line.decode()} client={host}:{port} "
                                 f"layers={','.join(self.conn.layers) or '-'}\n".encode())


class Hello(ProtocolPlugin):
    """Claims connections that start with HELLO."""
    name = "hello"
    version = "1.0"
    protocol_name = "hello"

    def __init__(self, tag: str = "v1") -> None:
        self.tag = tag

    def detect(self, data: bytes) -> str:
        if data[:5] == b"HELLO":
            return MATCH
        return NEED_MORE if b"HELLO".startswith(data) else NO

    def connection_protocol(self, conn: ConnectionInfo, server: ServerContext) -> asyncio.Protocol:
        return _LineConn(conn, self.tag)


class Streamed(ProtocolPlugin):
    """Owns its connections through asyncio streams (handle_connection)."""
    name = "streamed"
    version = "1.0"
    protocol_name = "streamed"
    priority = 150

    def detect(self, data: bytes) -> str:
        return MATCH if data[:1] == b"S" else NO

    async def handle_connection(self, reader: Any, writer: Any, protocol: str) -> None:
        line = await reader.readline()
        writer.write(b"streamed " + protocol.encode() + b" " + line)
        await writer.drain()


class Broken(ProtocolPlugin):
    name = "broken"
    version = "1.0"
    protocol_name = "broken"
    priority = 5

    def detect(self, data: bytes) -> str:
        raise RuntimeError("detect exploded")


class _Cfg:
    header_timeout = 1.0
    max_detect_bytes = 64
    trusted_proxies = ["127.0.0.1"]


async def _serve(manager: PluginManager, cfg: Any = None) -> tuple[asyncio.AbstractServer, int]:
    await manager.initialize_all()
    cfg = cfg or _Cfg()
    chain = ProtocolChain(manager, config=cfg)
    ctx = ServerContext(None, manager, cfg, asyncio.get_running_loop())
    server = await asyncio.get_running_loop().create_server(
        lambda: Detector(chain, ctx), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _talk(port: int, *chunks: bytes, read: bool = True, pause: float = 0.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        if not read:
            return b""
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()


def _v2(src: str, sport: int, dst: str = "10.0.0.1", dport: int = 443, tlv: bytes = b"") -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


async def test_terminal_protocol_claims_the_connection_bytes_split_anywhere() -> None:
    m = PluginManager()
    m.register(Hello())
    server, port = await _serve(m)
    async with server:
        out = await _talk(port, b"HE", b"LLO wor", b"ld\n", pause=0.05)
    assert out.startswith(b"v1 HELLO world client=127.0.0.1:")
    assert b"layers=-" in out


async def test_proxy_v1_from_a_trusted_peer_sets_the_client() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol())     # trusted_proxies from the listener config: 127.0.0.1
    server, port = await _serve(m)
    async with server:
        out = await _talk(port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nHELLO x\n")
    assert out == b"v1 HELLO x client=203.0.113.7:51234 layers=proxy_protocol\n"


async def test_proxy_v2_split_across_reads_with_tlvs() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol())
    server, port = await _serve(m)
    header = _v2("198.51.100.9", 40000, tlv=b"\x04\x00\x03abc")
    async with server:
        out = await _talk(port, header[:7], header[7:20], header[20:] + b"HEL", b"LO y\n", pause=0.05)
    assert out == b"v1 HELLO y client=198.51.100.9:40000 layers=proxy_protocol\n"


async def test_proxy_header_from_an_untrusted_peer_is_consumed_but_not_believed() -> None:
    class Untrusted(_Cfg):
        trusted_proxies = ["10.9.9.9/32"]
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol())
    server, port = await _serve(m, Untrusted())
    async with server:
        out = await _talk(port, _v2("198.51.100.9", 40000) + b"HELLO z\n")
    assert out.startswith(b"v1 HELLO z client=127.0.0.1:")
    assert b"198.51.100.9" not in out


async def test_plugin_config_trust_overrides_the_listener() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol(trusted_proxies=[]))
    server, port = await _serve(m)
    async with server:
        out = await _talk(port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nHELLO x\n")
    assert b"client=127.0.0.1:" in out


@pytest.mark.parametrize("first", [
    b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\nHELLO\n",           # bad address
    b"PROXY TCP4 1.1.1.1 10.0.0.1 1 99999\r\nHELLO\n",         # bad port
    b"PROXY TCP4 1.1.1.1\r\nHELLO\n",                          # too few fields
    b"PROXY " + b"X" * 120,                                    # no CRLF within 107 bytes
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + b"\x00" * 12,         # version 3
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"\x00" * 4,          # TCP4 with 4 address bytes
])
async def test_malformed_proxy_headers_close_the_connection(first: bytes, caplog: Any) -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol())
    server, port = await _serve(m)
    with caplog.at_level(logging.INFO, logger="covet_pipe.server"):
        async with server:
            out = await _talk(port, first)
    assert out == b""
    assert any("proxy_protocol" in r.getMessage() for r in caplog.records)


async def test_unclaimed_bytes_close_with_a_logged_reason(caplog: Any) -> None:
    m = PluginManager()
    m.register(Hello())
    server, port = await _serve(m)
    with caplog.at_level(logging.INFO, logger="covet_pipe.server"):
        async with server:
            out = await _talk(port, b"\x16\x03\x01 tls hello")
    assert out == b""
    assert any("no protocol plugin claims" in r.getMessage() and "hello" in r.getMessage()
               for r in caplog.records)


async def test_need_more_is_bounded_by_size_and_time(caplog: Any) -> None:
    class Short(_Cfg):
        header_timeout = 0.3
    m = PluginManager()
    m.register(Hello())
    server, port = await _serve(m, Short())
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.INFO, logger="covet_pipe.server"):
        async with server:
            t0 = loop.time()
            out = await _talk(port, b"HEL")          # never completes the word
            waited = loop.time() - t0
    assert out == b""
    assert 0.2 < waited < 4.0
    assert any("header_timeout" in r.getMessage() for r in caplog.records)


async def test_a_raising_detect_is_skipped_and_logged(caplog: Any) -> None:
    m = PluginManager()
    m.register(Broken())
    m.register(Hello())
    server, port = await _serve(m)
    with caplog.at_level(logging.ERROR, logger="covet_pipe.server"):
        async with server:
            out = await _talk(port, b"HELLO a\n")
    assert out.startswith(b"v1 HELLO a")
    assert any("'broken'" in r.getMessage() and "detect exploded" in r.getMessage() for r in caplog.records)


async def test_stream_protocols_get_handle_connection() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(Streamed())
    server, port = await _serve(m)
    async with server:
        out = await _talk(port, b"Some line\n")
    assert out == b"streamed streamed Some line\n"


async def test_priority_orders_the_walk_and_a_reload_serves_new_connections() -> None:
    class Greedy(ProtocolPlugin):
        name = "greedy"
        version = "1.0"
        protocol_name = "greedy"
        priority = 500

        def detect(self, data: bytes) -> str:
            return MATCH

        def connection_protocol(self, conn: ConnectionInfo, server: ServerContext) -> asyncio.Protocol:
            return _LineConn(conn, "greedy")

    m = PluginManager()
    m.register(Greedy())
    m.register(Hello("v1"))
    server, port = await _serve(m)
    async with server:
        assert (await _talk(port, b"HELLO a\n")).startswith(b"v1 ")
        assert (await _talk(port, b"other\n")).startswith(b"greedy ")
        # swap Hello for a new version: new connections see it
        await m.unload_plugin("hello")
        m.register(Hello("v2"))
        await m.initialize_all()
        assert (await _talk(port, b"HELLO b\n")).startswith(b"v2 ")


def test_builtins_join_unless_a_registered_plugin_speaks_their_protocol() -> None:
    class Hello2(Hello):
        name = "hello2"

    m = PluginManager()
    chain = ProtocolChain(m, builtins=[Hello("builtin")])
    assert [p.name for p in chain.plugins()] == ["hello"]
    m.register(Hello2())
    m._snapshots.rebuild()
    m._registry.get("hello2").state = "active"
    m._snapshots.rebuild()
    assert [p.name for p in chain.plugins()] == ["hello2"]


def test_claim_reports_layers_and_refusals() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol(trusted_proxies=["127.0.0.0/8"]))
    for r in m._registry.records():
        r.state = "active"
    m._snapshots.rebuild()
    chain = ProtocolChain(m)
    conn = ConnectionInfo(peer=("127.0.0.1", 5000), server=("127.0.0.1", 80))
    data = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\nHEL"
    verdict, plugin, used = chain.claim(data, conn)
    assert (verdict, plugin, used) == (NEED_MORE, None, len(data) - 3)
    assert conn.client == ("2001:db8::1", 1000) and conn.layers == ["proxy_protocol"]
    verdict, plugin, used = chain.claim(b"HELLO", conn)
    assert verdict == MATCH and plugin.name == "hello" and used == 0
    with pytest.raises(ProtocolError, match="proxy_protocol"):
        chain.claim(b"PROXY TCP5 a b c d\r\n", ConnectionInfo(peer=("127.0.0.1", 1), server=None))
    strict = ProxyProtocol(required=True)
    with pytest.raises(ProtocolError, match="required"):
        strict.detect(b"GET / HTTP/1.1\r\n")


def test_an_ipv4_mapped_peer_is_trusted_by_its_ipv4_network() -> None:
    """A dual-stack listener sees an IPv4 proxy as ::ffff:a.b.c.d; trusted_proxies names it in IPv4."""
    proxy = ProxyProtocol(trusted_proxies=["10.0.0.0/8"])
    header = b"PROXY TCP4 192.0.2.7 192.0.2.8 4000 80\r\n"
    for peer, believed in (("::ffff:10.1.2.3", True), ("10.1.2.3", True), ("::ffff:192.0.2.9", False),
                           ("::1", False)):
        conn = ConnectionInfo(peer=(peer, 5000), server=("::", 80))
        assert proxy.unwrap(header, conn) == len(header)
        assert conn.facts["proxy"]["trusted"] is believed, peer
        assert conn.client == (("192.0.2.7", 4000) if believed else (peer, 5000)), peer


async def test_a_third_party_protocol_runs_the_middleware_chain_for_its_requests(tmp_path: Any) -> None:
    """examples/line_protocol.py, loaded as a user would: its lines run the 'line' middleware."""
    from pathlib import Path

    from covet_pipe import MiddlewarePlugin, PluginConfig

    class HttpOnly(MiddlewarePlugin):
        name = "http_only"
        version = "1.0"

        def process_request(self, request: Any, ctx: Any) -> Any:
            raise AssertionError("an http-only middleware ran on a line request")

    example = Path(__file__).resolve().parents[2] / "examples" / "protocol_plugins" / "line_protocol.py"
    m = PluginManager(PluginConfig(entry_points=False))
    assert sorted(await m.load_plugin_from_path(str(example))) == ["line_echo", "no_secrets"]
    m.register(HttpOnly())
    server, port = await _serve(m)
    async with server:
        assert await _talk(port, b"SAY hello\n") == b"hello\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"SAY one\nSAY my secret\nPING x\nSAY two\n")
        writer.write_eof()
        out = await asyncio.wait_for(reader.read(), 15)
        writer.close()
    lines = out.decode().splitlines()
    assert lines[0] == "one" and lines[3] == "two"
    assert lines[1].startswith("ERR 403") and "no secrets over line" in lines[1]
    assert lines[2].startswith("ERR 400")
    assert m.get_plugin("no_secrets") is not None
    health = await m.get_health_status()
    assert health["plugins"]["no_secrets"]["calls"] >= 5
    assert health["plugins"]["http_only"]["calls"] == 0


async def test_health_lists_the_protocol_chain_in_order() -> None:
    m = PluginManager()
    m.register(Hello())
    m.register(ProxyProtocol())
    await m.initialize_all()
    assert (await m.get_health_status())["protocol_chain"] == ["proxy_protocol", "hello"]
    await m.shutdown_all()


async def test_a_native_plugin_guards_a_non_http_protocol() -> None:
    """A C plugin that lists 'line' in its descriptor runs on the line protocol's requests."""
    from pathlib import Path

    from covet_pipe import PluginConfig
    from tests.native._cplugins import cc

    so = cc("protocol_guard.c", "protocol_guard.so")
    example = Path(__file__).resolve().parents[2] / "examples" / "protocol_plugins" / "line_protocol.py"
    m = PluginManager(PluginConfig(entry_points=False))
    await m.load_plugin_from_path(str(example))
    assert await m.load_plugin_from_path(str(so)) == ["protocol_guard"]
    server, port = await _serve(m)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"SAY fine\nSAY top-secret\nSAY also fine\n")
        writer.write_eof()
        out = (await asyncio.wait_for(reader.read(), 15)).decode().splitlines()
        writer.close()
    assert out[0] == "fine" and out[2] == "also fine"
    assert out[1] == "ERR 403 refused by protocol_guard"
    health = await m.get_health_status()
    assert health["plugins"]["protocol_guard"]["short_circuits"] == 1
    assert health["plugins"]["protocol_guard"]["calls"] == 3


HELLO_FILE = '''
import asyncio
from covet_pipe import ProtocolPlugin


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(b"{tag}\\n")
        self.transport.close()


class Hello(ProtocolPlugin):
    name = "hello_file"
    version = "{version}"
    protocol_name = "hello"

    def detect(self, data):
        return "match" if data[:5] == b"HELLO" else ("need_more" if b"HELLO".startswith(data) else "no")

    def connection_protocol(self, conn, server):
        return Conn()


plugin = Hello()
'''


async def test_a_protocol_plugin_file_reloads_on_change(tmp_path: Any) -> None:
    import os

    from covet_pipe import PluginConfig

    folder = tmp_path / "plugins"
    folder.mkdir()
    path = folder / "hello_file.py"
    path.write_text(HELLO_FILE.replace("{tag}", "one").replace("{version}", "1.0.0"))
    m = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False, hot_reload=True,
                                   reload_on_change=True))
    assert (await m.load_plugins()).loaded == ["hello_file"]
    server, port = await _serve(m)
    loop = asyncio.get_running_loop()
    try:
        async with server:
            assert await _talk(port, b"HELLO") == b"one\n"
            tmp = folder / ".hello_file.py.tmp"
            tmp.write_text(HELLO_FILE.replace("{tag}", "two").replace("{version}", "2.0.0"))
            os.replace(tmp, path)
            deadline = loop.time() + 10
            while (out := await _talk(port, b"HELLO")) != b"two\n":
                assert out == b"one\n" and loop.time() < deadline, out
                await asyncio.sleep(0.05)
            assert (await m.get_health_status())["plugins"]["hello_file"]["version"] == "2.0.0"
    finally:
        await m.shutdown_all()
