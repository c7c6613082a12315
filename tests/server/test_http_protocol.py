"""covet-pipe's HTTP/1.1 over real sockets: keep-alive, streaming, 100-continue, errors, limits, tasks."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import socket
import threading
import time
from typing import Any

import pytest

from tests.server.conftest import WAIT, exchange

H = b"Host: t\r\n"


def _get(path: bytes = b"/", extra: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\n" + H + extra + b"\r\n"


async def _streaming(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    for i in range(3):
        await send({"type": "http.response.body", "body": b"part%d;" % i, "more_body": True})
        await asyncio.sleep(0.01)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_keepalive_serves_many_requests_on_one_connection(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s, socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        for i in range(5):
            c.sendall(_get(b"/k%d" % i))
            buf = b""
            for _ in range(100):
                buf += c.recv(65536)
                if buf.count(b"}") and b"\r\n\r\n" in buf:
                    break
            assert buf.startswith(b"HTTP/1.1 200 OK\r\n")
            assert json.loads(buf.split(b"\r\n\r\n", 1)[1])["path"] == f"/k{i}"


def test_streaming_response_is_chunked(covet_server: Any) -> None:
    with covet_server(_streaming) as s:
        (r,), _ = exchange(s.port, _get())
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"part0;part1;part2;"


def test_head_sends_no_body_but_keeps_content_length(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s:
        replies, _ = exchange(s.port, b"HEAD /x HTTP/1.1\r\n" + H + b"\r\n" + _get(b"/y"), expect=2,
                              heads=[True, False])
    assert [r.status for r in replies] == [200, 200]
    assert replies[0].body == b"" and int(replies[0].header("content-length")) > 0
    assert json.loads(replies[1].body)["path"] == "/y"


def test_expect_100_continue_is_sent_when_the_app_reads(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s, socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert c.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        c.sendall(b"hello")
        buf = b""
        for _ in range(100):
            buf += c.recv(65536)
            if buf.endswith(b"}"):
                break
    assert json.loads(buf.split(b"\r\n\r\n", 1)[1])["body"] == "hello"


def test_app_exception_gives_500_and_is_logged(covet_server: Any, caplog: Any) -> None:
    async def broken(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise ValueError("secret detail")

    with caplog.at_level(logging.ERROR, "covet_pipe.server"), covet_server(broken) as s:
        (r,), closed = exchange(s.port, _get())
    assert r.status == 500 and r.body == b"Internal Server Error"
    assert closed
    assert any("Exception in ASGI application" in rec.message for rec in caplog.records)


def test_exception_after_start_closes_the_connection(covet_server: Any) -> None:
    async def half(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"12345", "more_body": True})
            raise RuntimeError("boom")

    with covet_server(half) as s:
        replies, closed = exchange(s.port, _get())
    assert closed and replies == []          # a truncated body, then the close


def test_each_request_runs_in_its_own_task_and_context(covet_server: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("v", default="unset")

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen = var.get()
        var.set(scope["path"])
        task = asyncio.current_task()
        body = json.dumps({"seen": seen, "task": type(task).__name__ if task else None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    with covet_server(app) as s:
        replies, _ = exchange(s.port, _get(b"/one") + _get(b"/two"), expect=2)
    assert [json.loads(r.body) for r in replies] == [{"seen": "unset", "task": "Task"}] * 2


def test_starlette_app_with_anyio_is_served(covet_server: Any) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def home(request: Any) -> Any:
        return JSONResponse({"body": (await request.body()).decode()})

    async def stream(request: Any) -> Any:
        async def gen() -> Any:
            for i in range(3):
                yield f"{i},"
        return StreamingResponse(gen())

    app = Starlette(routes=[Route("/", home, methods=["POST"]), Route("/s", stream)])
    with covet_server(app) as s:
        replies, _ = exchange(s.port, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi" + _get(b"/s"),
                              expect=2)
    assert json.loads(replies[0].body) == {"body": "hi"}
    assert replies[1].body == b"0,1,2,"


def test_idle_keepalive_connection_is_closed_after_timeout(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, keepalive_timeout=0.5) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(_get())
        start = time.monotonic()
        buf = b""
        for _ in range(1000):
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
        elapsed = time.monotonic() - start
    assert buf.startswith(b"HTTP/1.1 200")
    assert 0.3 < elapsed < 0.5 + 4.0


def test_large_body_arrives_whole_with_flow_control(covet_server: Any, echo: Any) -> None:
    body = bytes(range(256)) * 4096           # 1 MiB, well past the read high-water mark
    with covet_server(echo, max_body_bytes=2 * 1024 * 1024) as s:
        (r,), _ = exchange(s.port, b"POST /big HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert r.status == 200
    assert json.loads(r.body)["body"].encode("latin-1") == body


def test_unclaimed_bytes_are_closed_without_an_answer(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s:
        replies, closed = exchange(s.port, b"PING\r\n")
    assert replies == [] and closed


def test_websocket_echo(covet_server: Any) -> None:
    from websockets.sync.client import connect

    async def ws_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": None})
        for _ in range(100):
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": f"{scope['path']}:{msg.get('text')}"})

    with covet_server(ws_app) as s, connect(f"ws://127.0.0.1:{s.port}/chat", open_timeout=WAIT) as ws:
        ws.send("hi")
        assert ws.recv(timeout=WAIT) == "/chat:hi"
        ws.send("again")
        assert ws.recv(timeout=WAIT) == "/chat:again"


def test_websocket_refused_by_the_app_gets_403(covet_server: Any) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    async def refuse(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    with covet_server(refuse) as s, pytest.raises(InvalidStatus, match="403"):
        connect(f"ws://127.0.0.1:{s.port}/", open_timeout=WAIT)


def test_response_head_is_sent_before_a_delayed_body(covet_server: Any) -> None:
    async def slow_body(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(1.0)
        await send({"type": "http.response.body", "body": b"late"})

    with covet_server(slow_body) as s, socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(_get())
        start = time.monotonic()
        head = c.recv(65536)
        first = time.monotonic() - start
        rest = b""
        for _ in range(100):
            if head.endswith(b"late") or rest.endswith(b"late"):
                break
            rest += c.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and first < 0.8, (head, first)
    assert (head + rest).endswith(b"\r\n\r\nlate")


def test_slow_reader_makes_the_app_wait_in_send(covet_server: Any) -> None:
    chunk = b"z" * (256 * 1024)
    count = 200                                        # 50 MiB in all
    sent_at: list[float] = []

    async def big(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"%d" % (len(chunk) * count))]})
        for i in range(count):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < count - 1})
            sent_at.append(time.monotonic())

    with covet_server(big) as s, socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(_get())
        time.sleep(1.0)                                # not reading: the buffers fill up
        during_pause = len(sent_at)
        total = 0
        deadline = time.monotonic() + 30
        while total < len(chunk) * count and time.monotonic() < deadline:
            data = c.recv(1 << 20)
            if not data:
                break
            total += len(data)
    assert during_pause < count // 2, f"{during_pause} of {count} chunks went out to a client that did not read"
    assert total - len(chunk) * count < 1024 and len(sent_at) == count


def test_unread_request_body_pauses_reading(covet_server: Any) -> None:
    release = threading.Event()

    async def late_reader(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        for _ in range(200):                           # wait for the test, without blocking the loop
            if release.is_set():
                break
            await asyncio.sleep(0.05)
        size = 0
        for _ in range(100000):
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"%d" % size
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    total = 64 * 1024 * 1024
    with covet_server(late_reader, max_body_bytes=total) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % total)
        c.setblocking(False)
        block = b"b" * (1 << 20)
        accepted = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and accepted < total:
            try:
                accepted += c.send(block[: min(len(block), total - accepted)])
            except BlockingIOError:
                time.sleep(0.01)
        assert accepted < total // 2, f"{accepted} bytes taken while the app was not reading"
        release.set()
        c.setblocking(True)
        while accepted < total:
            accepted += c.send(block[: min(len(block), total - accepted)])
        reply = b""
        for _ in range(1000):
            reply += c.recv(65536)
            if reply.endswith(b"%d" % total):
                break
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"\r\n\r\n%d" % total)


def test_plugin_refusing_a_websocket_handshake_reaches_the_client_with_its_status(covet_server: Any) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager

    class NoSockets(MiddlewarePlugin):
        name = "no_sockets"
        version = "1.0.0"
        protocols = frozenset({"websocket"})

        def process_request(self, request: Any, ctx: Any) -> Any:
            return MiddlewareAction.reject(429, "slow down")

    async def ws_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})

    manager = PluginManager()
    manager.register(NoSockets())
    with covet_server(ws_app, manager) as s, pytest.raises(InvalidStatus, match="429"):
        connect(f"ws://127.0.0.1:{s.port}/", open_timeout=WAIT)


def _keepalive_app() -> Any:
    async def ws_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        for _ in range(1000):
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": msg.get("text") or ""})
    return ws_app


def test_websocket_keepalive_closes_a_silent_client_with_1011(covet_server: Any) -> None:
    """A client that never answers pings is closed once a pong is ping_timeout late."""
    import base64
    import os as _os
    import socket as _socket

    with covet_server(_keepalive_app(), ws_ping_interval=0.2, ws_ping_timeout=0.3) as s:
        key = base64.b64encode(_os.urandom(16))
        with _socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
            c.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
            start = time.monotonic()
            data = b""
            while True:                     # read (and never answer) until the server closes
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
            elapsed = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 101")
    frames = data.split(b"\r\n\r\n", 1)[1]
    assert frames[:1] == b"\x89"                               # a ping came first
    assert b"\x88" in frames and b"keepalive ping timeout" in frames   # then a close, 1011
    assert 0.4 < elapsed < 0.5 + WAIT


def test_websocket_keepalive_keeps_an_answering_client(covet_server: Any) -> None:
    from websockets.sync.client import connect

    with covet_server(_keepalive_app(), ws_ping_interval=0.1, ws_ping_timeout=0.5) as s, \
            connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
        for i in range(8):                 # ~1.2 s: several ping rounds, each answered by the client
            ws.send(f"m{i}")
            assert ws.recv(timeout=WAIT) == f"m{i}"
            time.sleep(0.15)
