"""The supervisor's admin port in front of a worker's control socket: streams relayed, HEAD, refusals.

Real sockets on both sides: a worker-side Listener on a Unix socket streaming events (chunked), the
fan-out on a free 127.0.0.1 port in front of it; the client reads events as they come and hangs up,
and the worker's stream sees the hang-up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from covet_pipe.server.admin_fanout import FanOutApp
from covet_pipe.server.admin_port import AdminPort
from covet_pipe.server.config import ServeConfig

TOKEN = "stream-test-token-0123456789abcdef"


async def test_events_are_relayed_as_they_come_and_stop_when_the_client_goes(tmp_path: Path) -> None:
    ended = asyncio.Event()

    async def worker(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = dict(scope["headers"])
        assert headers[b"authorization"] == f"Bearer {TOKEN}".encode()     # the fan-out's token
        assert headers[b"accept"] == b"text/event-stream"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        gone = asyncio.ensure_future(receive())      # as the admin app does: http.disconnect ends it
        try:
            for n in range(1000):                   # bounded: the client hangs up long before
                await send({"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True})
                await asyncio.wait([gone], timeout=0.02)
                if gone.done() and gone.result()["type"] == "http.disconnect":
                    break
                if gone.done():
                    gone = asyncio.ensure_future(receive())
        finally:
            gone.cancel()
            ended.set()

    sock_path = str(tmp_path / "worker-0.sock")
    inner = AdminPort(worker, ServeConfig(admin=f"unix:{sock_path}", loop="asyncio"))
    outer = AdminPort(FanOutApp(TOKEN, lambda: [(0, 1, sock_path)]), ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await inner.start()
    await outer.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(("GET /_plugins/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                      f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        assert head.startswith(b"HTTP/1.1 200") and b"content-type: text/event-stream" in head.lower()
        seen = b""
        while seen.count(b"data: ") < 3:
            seen += await asyncio.wait_for(reader.read(4096), 30)
        assert b"data: 0\n\n" in seen and b"data: 1\n\n" in seen
        writer.close()
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(ended.wait(), 30)
        # the worker's stream ended with the client, not after its 1000 events (20 s)
        assert asyncio.get_running_loop().time() - started < 10
    finally:
        await outer.shutdown()
        await inner.shutdown()
    assert not Path(sock_path).exists()


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
    """The worker streams on; the supervisor ends a cookie's relay once that session is closed."""
    from covet_pipe.admin.sessions import SESSIONS

    async def worker(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for n in range(500):                        # bounded: 10 s at most
            await send({"type": "http.response.body", "body": b"data: %d\n\n" % n, "more_body": True})
            await asyncio.sleep(0.02)
        await send({"type": "http.response.body", "body": b""})

    sock_path = str(tmp_path / "worker-0.sock")
    inner = AdminPort(worker, ServeConfig(admin=f"unix:{sock_path}", loop="asyncio"))
    outer = AdminPort(FanOutApp(TOKEN, lambda: [(0, 1, sock_path)]), ServeConfig(admin="127.0.0.1:0", loop="asyncio"))
    await inner.start()
    await outer.start()
    cookie = SESSIONS.open(TOKEN)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", outer.listener.port)
        writer.write(f"GET /_plugins/events HTTP/1.1\r\nHost: x\r\nCookie: covet_pipe_admin={cookie}\r\n\r\n".encode())
        seen = b""
        while seen.count(b"data: ") < 2:
            seen += await asyncio.wait_for(reader.read(4096), 30)
        assert seen.startswith(b"HTTP/1.1 200")
        SESSIONS.close(cookie)
        started = asyncio.get_running_loop().time()
        while not seen.endswith(b"0\r\n\r\n"):      # the chunked body's end
            more = await asyncio.wait_for(reader.read(4096), 30)
            assert more, seen[-200:]
            seen += more
        assert b"event: session-ended" in seen
        assert asyncio.get_running_loop().time() - started < 5     # not the worker's 10 s
        writer.close()
    finally:
        SESSIONS.close(cookie)
        await outer.shutdown()
        await inner.shutdown()
