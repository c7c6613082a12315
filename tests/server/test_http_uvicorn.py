"""covet-pipe's HTTP/1.1 handed to uvicorn as its ``http`` class (``uvicorn.run(app, http=UvicornHTTP)``)."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from covet_pipe.server.http11 import UvicornHTTP
from tests.conftest import Served
from tests.server.conftest import echo_app, exchange


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
