"""PROXY v1/v2 in front of HTTP/1.1 through covet-pipe's own listener, on 127.0.0.1.

The app echoes ``scope["client"]``; a middleware echoes ``request.client``. The
proxied address shows only when the peer (127.0.0.1 here) is trusted.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

from covet_pipe import MiddlewarePlugin, PluginManager
from covet_pipe.builtin import ProxyProtocol
from covet_pipe.builtin.proxy_protocol import V2_SIGNATURE
from tests._helpers import lifespan


async def client_app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = json.dumps({"client": list(scope["client"]) if scope.get("client") else None}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class SeesClient(MiddlewarePlugin):
    name = "sees_client"
    version = "1.0"

    def process_response(self, response: Any, ctx: Any) -> None:
        client = ctx.request.client
        response.headers.set("x-mw-client", f"{client[0]}:{client[1]}" if client else "-")


def _v2(src: str, sport: int) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton("10.0.0.1") + struct.pack("!HH", sport, 443)
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def _client_of(raw: bytes) -> tuple[Any, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:200]
    mw = next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
              if line.lower().startswith(b"x-mw-client:"))
    return json.loads(body)["client"], mw


REQ = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_trusted_proxy_v1_and_v2_set_the_client(covet_server: Any) -> None:
    manager = PluginManager()
    manager.register(SeesClient())
    with covet_server(client_app, manager, trusted_proxies=["127.0.0.1/32"]) as s:
        client, mw = _client_of(_exchange(s.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n" + REQ))
        assert client == ["203.0.113.7", 51234] and mw == "203.0.113.7:51234"
        client, mw = _client_of(_exchange(s.port, _v2("198.51.100.9", 40000) + REQ))
        assert client == ["198.51.100.9", 40000] and mw == "198.51.100.9:40000"
        # without a header the peer is the client
        client, _ = _client_of(_exchange(s.port, REQ))
        assert client[0] == "127.0.0.1"


def test_untrusted_peer_keeps_its_own_address(covet_server: Any) -> None:
    manager = PluginManager()
    manager.register(SeesClient())
    manager.register(ProxyProtocol(trusted_proxies=["10.0.0.0/8"]))
    with covet_server(client_app, manager) as s:
        client, mw = _client_of(_exchange(s.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n" + REQ))
        assert client[0] == "127.0.0.1" and mw.startswith("127.0.0.1:")


def test_a_malformed_proxy_header_closes_without_an_answer(covet_server: Any) -> None:
    manager = PluginManager()
    manager.register(ProxyProtocol(trusted_proxies=["127.0.0.1"]))
    with covet_server(client_app, manager) as s:
        assert _exchange(s.port, b"PROXY TCP4 203.0.113.7 nonsense\r\n" + REQ) == b""
        # the listener serves on
        raw = _exchange(s.port, REQ)
        assert raw.startswith(b"HTTP/1.1 200")
