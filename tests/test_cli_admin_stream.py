"""The supervisor's admin port in front of workers' control sockets: the summed dashboard, HEAD, refusals.

Real sockets on both sides: two workers' admin apps (each its own PluginManager, as with
``--workers 2``) on Unix sockets, the fan-out on a free 127.0.0.1 port in front of them; the client
reads the supervisor's own event stream of the workers' summed snapshots and hangs up, and the
stream ends with it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from covet_pipe import MiddlewarePlugin, PluginManager, admin_app, wrap
from covet_pipe.server.admin_fanout import FanOutApp
from covet_pipe.server.admin_port import AdminPort
from covet_pipe.server.config import ServeConfig
from tests._helpers import asgi_call, echo_app

TOKEN = "stream-test-token-0123456789abcdef"


class Counted(MiddlewarePlugin):
    name = "counted"
    version = "1.0.0"

    def process_request(self, request, ctx):
        return None


async def _workers(tmp_path: Path, calls: tuple[int, ...]) -> tuple[list[AdminPort], list[tuple[int, int, str]]]:
    """One admin app per worker on its control socket; worker *i* has served calls[i] requests."""
    ports, listed = [], []
    for slot, n in enumerate(calls):
        manager = PluginManager()
        manager.register(Counted())
        await manager.initialize_all()
        app = wrap(echo_app, manager)
        for _ in range(n):
            assert (await asgi_call(app, "/")).status == 200
        path = str(tmp_path / f"worker-{slot}.sock")
        port = AdminPort(admin_app(manager, token=TOKEN), ServeConfig(admin=f"unix:{path}", loop="asyncio"))
        await port.start()
        ports.append(port)
        listed.append((slot, 1000 + slot, path))
    return ports, listed


async def _events(reader: asyncio.StreamReader, count: int) -> list[dict[str, Any]]:
    """*count* data events of the chunked stream, parsed."""
    seen, found = b"", []
    while len(found) < count:
        seen += await asyncio.wait_for(reader.read(65536), 30)
        found = [line[6:] for line in seen.split(b"\n") if line.startswith(b"data: {")]
    return [json.loads(f) for f in found[:count]]


async def test_the_event_stream_sums_the_workers_and_stops_when_the_client_goes(tmp_path: Path) -> None:
    workers, listed = await _workers(tmp_path, (3, 4))
    fan = FanOutApp(TOKEN, lambda: listed)
    outer = AdminPort(fan, ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await outer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(("GET /_plugins/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                      f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200") and b"content-type: text/event-stream" in head.lower()
        [first, second] = await _events(reader, 2)
        for event in (first, second):
            [plugin] = event["plugins"]
            assert plugin["name"] == "counted" and plugin["stats"]["calls"] == 7     # 3 + 4
            assert event["health"]["plugins"]["counted"]["calls"] == 7
            assert [w["answered"] for w in event["workers"]] == [True, True]
        assert second["at"] >= first["at"]
        assert fan.dashboard.open_streams == 1
        writer.close()
        for _ in range(200):            # the stream ends with the client, not after MAX_STREAM (10 s)
            if fan.dashboard.open_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert fan.dashboard.open_streams == 0
    finally:
        await outer.shutdown()
        for w in workers:
            await w.shutdown()


async def test_the_snapshot_is_summed_and_a_missing_worker_is_named(tmp_path: Path) -> None:
    workers, listed = await _workers(tmp_path, (2, 5))
    listed.append((2, 1002, str(tmp_path / "gone.sock")))        # a worker between a crash and its restart
    outer = AdminPort(FanOutApp(TOKEN, lambda: listed), ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await outer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(("GET /_plugins/dashboard/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
        raw = await asyncio.wait_for(reader.read(), 30)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"x-covet-pipe-workers: 3" in head.lower()
        snap = json.loads(body)
        assert snap["plugins"][0]["stats"]["calls"] == 7
        assert snap["workers"] == [{"worker": 0, "pid": 1000, "answered": True},
                                   {"worker": 1, "pid": 1001, "answered": True},
                                   {"worker": 2, "pid": 1002, "answered": False}]
        writer.close()
    finally:
        await outer.shutdown()
        for w in workers:
            await w.shutdown()


async def test_a_stream_without_the_token_is_refused_before_any_worker(tmp_path: Path) -> None:
    outer = AdminPort(FanOutApp(TOKEN, lambda: [(0, 1, str(tmp_path / "none.sock"))]),
                      ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await outer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(b"GET /_plugins/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                     b"Authorization: Bearer wrong-token-0123456789\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 403")
        writer.close()
    finally:
        await outer.shutdown()


async def test_a_head_request_is_answered_without_waiting_for_a_body(tmp_path: Path) -> None:
    from covet_pipe import PluginManager, admin_app

    sock_path = str(tmp_path / "worker-0.sock")
    inner = AdminPort(admin_app(PluginManager(), token=TOKEN), ServeConfig(admin=f"unix:{sock_path}", loop="asyncio"))
    outer = AdminPort(FanOutApp(TOKEN, lambda: [(0, 1, sock_path)]), ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await inner.start()
    await outer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(f"HEAD /_plugins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)   # the worker's 405, forwarded
        assert head.startswith(b"HTTP/1.1 405"), head
        writer.close()
    finally:
        await outer.shutdown()
        await inner.shutdown()


async def test_a_cookie_stream_ends_with_its_session(tmp_path: Path) -> None:
    """The supervisor's stream of a cookie's session ends once that session is closed."""
    from covet_pipe.admin.sessions import SESSIONS

    workers, listed = await _workers(tmp_path, (1,))
    outer = AdminPort(FanOutApp(TOKEN, lambda: listed), ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await outer.start()
    cookie = SESSIONS.open(TOKEN)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(f"GET /_plugins/events HTTP/1.1\r\nHost: x\r\nCookie: covet_pipe_admin={cookie}\r\n\r\n".encode())
        seen = b""
        while seen.count(b"data: {") < 1:
            seen += await asyncio.wait_for(reader.read(65536), 30)
        assert seen.startswith(b"HTTP/1.1 200")
        SESSIONS.close(cookie)
        started = asyncio.get_running_loop().time()
        while not seen.endswith(b"0\r\n\r\n"):      # the chunked body's end
            more = await asyncio.wait_for(reader.read(65536), 30)
            assert more, seen[-200:]
            seen += more
        assert b"event: session-ended" in seen
        assert asyncio.get_running_loop().time() - started < 5     # not the stream's 10 s
        writer.close()
    finally:
        SESSIONS.close(cookie)
        await outer.shutdown()
        for w in workers:
            await w.shutdown()
