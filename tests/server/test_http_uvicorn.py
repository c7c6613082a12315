"""covet-pipe's HTTP/1.1 handed to uvicorn as its ``http`` class (``uvicorn.run(app, http=UvicornHTTP)``)."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from typing import Any

import pytest

from covet_pipe.server.http11 import UvicornHTTP
from tests._helpers import lifespan
from tests.conftest import Served
from tests.server.conftest import WAIT, echo_app, exchange, parse_replies


def test_uvicorn_serves_through_covet_http11(serve: Any) -> None:
    raw = (b"GET /a?x=1 HTTP/1.1\r\nHost: u\r\n\r\n"
           b"POST /b HTTP/1.1\r\nHost: u\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    with serve(echo_app, http=UvicornHTTP) as s:
        replies, _ = exchange(s.port, raw, expect=2)
        (bad,), closed = exchange(s.port, b"GET / HTTP/1.1\nHost: u\n\n")
    assert [r.header("server") for r in replies] == ["covet-pipe", "covet-pipe"]
    first, second = (json.loads(r.body) for r in replies)
    assert (first["path"], first["query"]) == ("/a", "x=1")
    assert (second["method"], second["body"]) == ("POST", "abc")
    assert bad.status == 400 and closed


def test_uvicorn_takes_it_as_an_import_string(serve: Any) -> None:
    with serve(echo_app, http="covet_pipe.server.http11:UvicornHTTP") as s:
        (r,), _ = exchange(s.port, b"GET /s HTTP/1.1\r\nHost: u\r\n\r\n")
    assert r.header("server") == "covet-pipe" and json.loads(r.body)["path"] == "/s"


def test_the_object_uvicorn_made_reaches_the_connection() -> None:
    # uvicorn's loop makes a UvicornHTTP per connection; once made, it is the connection's front
    import asyncio
    import socket

    import uvicorn
    from uvicorn.server import ServerState

    async def run() -> tuple[Any, ...]:
        loop = asyncio.get_running_loop()
        state = ServerState()
        config = uvicorn.Config(echo_app, log_config=None)
        made = UvicornHTTP(config, state, {}, _loop=loop)
        ours, theirs = socket.socketpair()
        with theirs:
            transport, _ = await loop.connect_accepted_socket(lambda: made, ours)
            theirs.setblocking(False)
            await loop.sock_sendall(theirs, b"GET /x HTTP/1.1\r\nHost: u\r\n\r\n")
            reply = await asyncio.wait_for(loop.sock_recv(theirs, 65536), 10)
            seen = (made.transport is transport, made.loop is loop, made.is_idle(), len(state.connections))
            transport.close()
        return seen + (reply,)

    same_transport, same_loop, idle, registered, reply = asyncio.run(run())
    assert same_transport and same_loop and registered == 1
    assert reply.startswith(b"HTTP/1.1 200 ") and idle


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_access_log_is_uvicorns() -> None:
    # on uvicorn's access logger, in its format (client, quoted request line, status); a quote is %22
    records = _Records()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(records)
    try:
        with Served(echo_app, http=UvicornHTTP, log_config=None, log_level="info") as s:
            replies, _ = exchange(s.port, b'GET /a"b?q=1 HTTP/1.1\r\nHost: u\r\n\r\n'
                                          b"HEAD /h HTTP/1.1\r\nHost: u\r\n\r\n", expect=2, heads=[False, True])
    finally:
        access.removeHandler(records)
    assert [r.status for r in replies] == [200, 200]
    assert len(records.lines) == 2, records.lines
    first, second = records.lines
    assert re.fullmatch(r'127\.0\.0\.1:\d+ - "GET /a%22b\?q=1 HTTP/1\.1" 200', first), first
    assert second.endswith(' - "HEAD /h HTTP/1.1" 200'), second


@pytest.mark.parametrize("http", ["httptools", UvicornHTTP], ids=["uvicorn-httptools", "covet-pipe"])
def test_limit_concurrency_answers_503_as_uvicorn(http: Any) -> None:
    # uvicorn counts open connections: with limit 2, a second one gets 503 and is closed
    get = b"GET / HTTP/1.1\r\nHost: u\r\n\r\n"
    with Served(echo_app, http=http, limit_concurrency=2) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as held:
            held.sendall(get)
            first, _ = parse_replies(_read_reply(held))
            (second,), closed = exchange(s.port, get)
        deadline = time.monotonic() + WAIT
        while len(s.server.server_state.connections) > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        (third,), _ = exchange(s.port, get)
    assert [r.status for r in first] == [200]
    assert (second.status, second.body, second.header("connection"), closed) == (503, b"Service Unavailable",
                                                                                   "close", True)
    assert third.status == 200


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not parse_replies(data, closed=False)[0]:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


async def _ws_app(scope: dict, receive: Any, send: Any) -> None:
    """Echoes one websocket message; an HTTP request gets 200 'http'."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message.get("text") or ""})
        await send({"type": "websocket.close"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"http"})


_UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: u\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


@pytest.mark.parametrize("http", ["httptools", UvicornHTTP], ids=["uvicorn-httptools", "covet-pipe"])
def test_ws_none_serves_the_upgrade_request_as_http(http: Any) -> None:
    with Served(_ws_app, http=http, ws="none") as s:
        (reply,), _ = exchange(s.port, _UPGRADE)
    assert (reply.status, reply.body) == (200, b"http")


@pytest.mark.parametrize("ws, server", [("auto", None), ("websockets-sansio", "uvicorn")])
def test_ws_names_who_takes_the_upgrade(ws: str, server: str | None) -> None:
    # "auto": covet-pipe's websocket (its 101 names no server); a named implementation: uvicorn's
    # own, as uvicorn runs it (its 101 carries uvicorn's default headers)
    from websockets.sync.client import connect

    with Served(_ws_app, http=UvicornHTTP, ws=ws) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT, close_timeout=WAIT) as client:
            client.send("hi")
            echoed = client.recv(timeout=WAIT)
            assert client.response is not None
            answered_by = client.response.headers.get("server")
    assert (echoed, answered_by) == ("hi", server)


def test_uvicorn_ws_max_size_carries_over() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with Served(_ws_app, http=UvicornHTTP, ws_max_size=8) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT, close_timeout=WAIT) as client:
            client.send("x" * 64)
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=WAIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
