"""HTTP/1.1 limits and deadlines at their edges: pipelined heads across reads, a body over the limit
after the app has answered, the header deadline counted from accept."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from tests.server.conftest import WAIT, exchange, parse_replies

H = b"Host: t\r\n"
GET = b"GET / HTTP/1.1\r\n" + H + b"\r\n"


async def ok_app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


# -- pipelined requests in large reads ------------------------------------------------------------


def _http_connection(server: Any) -> Any:
    (conn,) = [c for c in server.listener.context.connections if type(c).__name__ == "HttpConnection"]
    return conn


def test_reads_that_end_mid_head_count_only_the_head_they_end_in(covet_server: Any) -> None:
    # The reads are chosen here (the kernel may cut them anywhere): the second one finishes a head,
    # carries 100 whole requests (more than max_header_bytes) and ends in the middle of another head.
    first = b"GET /0 HTTP/1.1\r\n" + H + b"\r\nGET /1 HTTP/1.1\r\nHo"
    middle = b"st: t\r\n\r\n" + b"".join(b"GET /m%d HTTP/1.1\r\n" % i + H + b"\r\n" for i in range(100))
    second = middle + b"GET /last HTTP/1.1\r\nHo"
    third = b"st: t\r\n\r\n"
    assert len(second) > 2 * 1024

    async def feed(conn: Any) -> None:
        conn.data_received(first)
        conn.data_received(second)
        for _ in range(int(WAIT / 0.02)):        # reading is paused while pipelined requests wait
            if conn.transport.is_closing():
                return
            if conn.transport.is_reading():
                break
            await asyncio.sleep(0.02)
        conn.data_received(third)

    with covet_server(ok_app, max_header_bytes=1024) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(GET)
        buf = b""
        while not buf.endswith(b"ok"):
            buf += c.recv(65536)
        s.call(feed(_http_connection(s)))
        buf = b""
        deadline = time.monotonic() + WAIT
        replies: list[Any] = []
        while len(replies) < 103 and time.monotonic() < deadline:
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
            replies, _ = parse_replies(buf, closed=False)
    assert [r.status for r in replies] == [200] * 103


def test_one_header_growing_over_many_reads_still_gets_431(covet_server: Any) -> None:
    # httptools holds a header until its line ends: the reads that carry it are what counts
    pieces = [b"GET / HTTP/1.1\r\n" + H + b"X-Big: ", b"a" * 700, b"a" * 700, b"a" * 700]
    with covet_server(ok_app, max_header_bytes=1024) as s:
        (r,), closed = exchange(s.port, pieces, pause=0.2)
    assert r.status == 431 and closed


PIPELINED = 100_000
WRITE = 67_000          # not a multiple of the request's length: most writes end in the middle of a head


def _pipeline(port: int, count: int, deadline: float) -> tuple[int, bytes, bool]:
    """*count* GETs on one connection in WRITE-byte writes, responses read meanwhile."""
    data = GET * count
    marker = b"HTTP/1.1 200 OK\r\n"
    errors: list[BaseException] = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        def write() -> None:
            try:
                for i in range(0, len(data), WRITE):
                    if time.monotonic() > deadline:
                        return
                    c.sendall(data[i:i + WRITE])
            except OSError as exc:        # the server closed: the reader sees why
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        seen, tail, closed = 0, b"", False
        try:
            while seen < count and time.monotonic() < deadline:
                c.settimeout(max(0.1, deadline - time.monotonic()))
                try:
                    chunk = c.recv(262144)
                except (socket.timeout, ConnectionResetError):
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                window = tail + chunk
                seen += window.count(marker)
                tail = window[-(len(marker) - 1):]
        finally:
            writer.join(WAIT)
    return seen, tail, closed


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_100k_pipelined_gets_in_67kb_writes_all_get_their_response(covet_server: Any, loop: str) -> None:
    with covet_server(ok_app, loop=loop) as s:
        seen, tail, closed = _pipeline(s.port, PIPELINED, time.monotonic() + 120)
        (after,), _ = exchange(s.port, GET)
    assert (seen, closed) == (PIPELINED, False), tail
    assert after.status == 200


# -- a body over max_body_bytes after the app has answered ------------------------------------------


def test_chunked_body_over_the_limit_after_an_early_answer_closes_the_connection(covet_server: Any) -> None:
    limit, total, piece = 64 * 1024, 64 * 1024 * 1024, 0x10000
    chunk = b"%x\r\n" % piece + b"x" * piece + b"\r\n"
    with covet_server(ok_app, max_body_bytes=limit) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ok"):       # ok_app answers without reading the body
            answer += c.recv(65536)
        sent = 0
        deadline = time.monotonic() + WAIT
        try:
            while sent < total and time.monotonic() < deadline:
                c.sendall(chunk)
                sent += piece
            c.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        c.settimeout(2.0)
        try:
            rest, closed = c.recv(65536), True
        except ConnectionResetError:
            rest, closed = b"", True
        except socket.timeout:
            rest, closed = b"", False
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert closed and rest == b"", "past max_body_bytes the connection is closed (the 200 went out already)"
    # the server stopped reading: the client could not push the whole body (kernel buffers take a few MB)
    assert sent < total // 2, sent



def test_a_body_arriving_steadily_after_an_early_answer_is_not_cut(covet_server: Any) -> None:
    # each gap is under body_timeout, the whole body takes three times it: only a stall is cut
    pieces = [b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\n"] + [b"a"] * 6 + [GET]
    with covet_server(ok_app, body_timeout=1.0) as s:
        replies, closed = exchange(s.port, pieces, pause=0.5, expect=2)
    assert [r.status for r in replies] == [200, 200] and not closed

# -- the header deadline counts from accept ---------------------------------------------------------

SLOW_HEAD = b"GET /slow HTTP/1.1\r\n" + H + b"User-Agent: one-byte-a-second\r\n\r\n"


def _trickle(port: int, data: bytes, gap: float, limit: float) -> tuple[bytes, float]:
    """Send *data* a byte every *gap* s until the server answers or closes: (reply, s since connect)."""
    import select
    start = time.monotonic()
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        for i in range(len(data)):
            try:
                c.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([c], [], [], gap)[0] or time.monotonic() - start > limit:
                break
        c.settimeout(max(0.1, limit - (time.monotonic() - start)))
        try:
            for _ in range(100):
                chunk = c.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            return reply, float("inf")         # still open at the limit
    return reply, time.monotonic() - start


@pytest.mark.parametrize("header_timeout", [2.0, 5.0])
def test_a_head_trickling_a_byte_a_second_is_closed_within_header_timeout_of_accept(
        covet_server: Any, header_timeout: float) -> None:
    # "GET /" takes 4 s at this pace: with 2 s the protocol chain is still detecting at the deadline,
    # with 5 s HTTP has the connection, and its head's deadline is the one detection started
    bound = header_timeout + 1 + 1.5
    with covet_server(ok_app, header_timeout=header_timeout) as s:
        reply, elapsed = _trickle(s.port, SLOW_HEAD, 1.0, bound + WAIT)
    assert header_timeout * 0.9 < elapsed < bound, (elapsed, reply[:40])
    if header_timeout > 4:
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:40]


def test_a_later_head_on_a_kept_alive_connection_gets_a_header_timeout_of_its_own(covet_server: Any) -> None:
    with covet_server(ok_app, header_timeout=1.0, keepalive_timeout=30.0) as s, \
            socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(GET)
        first = b""
        while not first.endswith(b"ok"):
            first += c.recv(65536)
        time.sleep(1.5)                    # idle longer than header_timeout: keep-alive's time, not the head's
        start = time.monotonic()
        reply = b""
        for i in range(len(SLOW_HEAD)):
            c.sendall(SLOW_HEAD[i:i + 1])
            c.settimeout(0.2)
            try:
                reply = c.recv(65536)
                break
            except socket.timeout:
                pass
        elapsed = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:40]
    assert 0.9 < elapsed < 1.0 + 1 + 1.5, elapsed
