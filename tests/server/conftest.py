"""Fixtures for covet-pipe's listener: a real server in a thread, raw HTTP over sockets, echo apps.

RESP fixtures live in ``_resp_fixtures.py``; this file holds the HTTP ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from typing import Any, Iterator

import pytest

from covet_pipe.server.config import ServeConfig
from covet_pipe.server.listener import Listener, new_event_loop
from tests._helpers import lifespan

#: the bound on every wait in these tests (generous: two cores shared with other work)
WAIT = 10.0


class CovetServer:
    """covet-pipe's Listener serving *app* on a free 127.0.0.1 port, its loop in a thread."""

    def __init__(self, app: Any, manager: Any = None, **options: Any) -> None:
        options.setdefault("port", 0)
        options.setdefault("loop", "uvloop")
        self.config = ServeConfig(**options)
        self.listener = Listener(app, manager, self.config)
        self.loop = new_event_loop(self.config.loop)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def call(self, coro: Any, timeout: float = WAIT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> CovetServer:
        self.thread.start()
        self.call(self.listener.start(), 20)
        self.port = self.listener.port
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.call(self.listener.shutdown(), self.config.shutdown_timeout + WAIT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            if not self.thread.is_alive():
                self.loop.close()


@pytest.fixture
def covet_server() -> Iterator[Any]:
    """``with covet_server(app, header_timeout=1) as s: s.port``: covet-pipe's listener on loopback."""

    @contextlib.contextmanager
    def _serve(app: Any, manager: Any = None, **options: Any) -> Iterator[CovetServer]:
        with CovetServer(app, manager, **options) as s:
            yield s

    yield _serve


# -- raw HTTP ------------------------------------------------------------------------------------


class Reply:
    """One parsed response: status, headers (lowercased names), body (de-chunked)."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:60]!r})"


def parse_replies(data: bytes, heads: list[bool] | None = None, closed: bool = True) -> tuple[list[Reply], bytes]:
    """Responses in *data* (1xx interim ones skipped); ``heads[i]``: the i-th answers a HEAD."""
    replies: list[Reply] = []
    heads = heads or []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [(n.strip().lower(), v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:])]
        rest = data[end + 4:]
        if 100 <= status < 200:
            data = rest
            continue
        hmap = dict(headers)
        is_head = heads[len(replies)] if len(replies) < len(heads) else False
        if is_head or status in (204, 304):
            body = b""
        elif "content-length" in hmap:
            n = int(hmap["content-length"])
            if len(rest) < n:
                break
            body, rest = rest[:n], rest[n:]
        elif hmap.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            complete = False
            while True:
                eol = rest.find(b"\r\n")
                if eol < 0:
                    break
                size = int(rest[:eol].split(b";")[0], 16)
                if len(rest) < eol + 2 + size + 2:
                    break
                body += rest[eol + 2:eol + 2 + size]
                rest = rest[eol + 2 + size + 2:]
                if size == 0:
                    complete = True
                    break
            if not complete:
                break
        else:
            if not closed:
                break
            body, rest = rest, b""
        replies.append(Reply(status, headers, body))
        data = rest
    return replies, data


def exchange(port: int, data: bytes | list[bytes], *, expect: int = 1, heads: list[bool] | None = None,
             timeout: float = WAIT, pause: float = 0.0) -> tuple[list[Reply], bool]:
    """Send *data* (pieces *pause* s apart) on a new connection; read until *expect* replies or close.

    :returns: the replies and whether the server closed the connection.
    """
    pieces = [data] if isinstance(data, bytes) else data
    buf = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
            if not chunk:
                closed = True
                break
            buf += chunk
            replies, _ = parse_replies(buf, heads, closed=False)
            if len(replies) >= expect:
                # a close right after the last reply is part of the answer: look briefly
                s.settimeout(0.2)
                try:
                    more = s.recv(65536)
                    closed = not more
                    buf += more
                except socket.timeout:
                    pass
                except ConnectionResetError:
                    closed = True
                break
    replies, _ = parse_replies(buf, heads, closed=closed)
    return replies, closed


@pytest.fixture
def raw() -> Any:
    """``raw(port, bytes, expect=2)``: replies over a raw socket (see :func:`exchange`)."""
    return exchange


# -- apps ----------------------------------------------------------------------------------------


async def echo_app(scope: dict, receive: Any, send: Any) -> None:
    """Answers with the request as JSON: method, path, raw_path, query, headers, body."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = b""
    for _ in range(100000):
        message = await receive()
        if message["type"] != "http.request":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    out = json.dumps({
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"), "http_version": scope["http_version"],
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
def echo() -> Any:
    return echo_app
