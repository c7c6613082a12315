"""Slow clients get 408 within the configured bound while other clients are served meanwhile."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from tests.server.conftest import WAIT, exchange

BOUND = 1.0          # header_timeout and body_timeout configured for these tests
MARGIN = 3.0         # generous: two shared cores
REQUEST = b"GET /slow HTTP/1.1\r\nHost: t\r\nUser-Agent: one-byte-at-a-time\r\nX-Pad: " + b"p" * 40 + b"\r\n\r\n"


def _served_meanwhile(port: int, stop: threading.Event, latencies: list[float]) -> None:
    for i in range(200):
        if stop.is_set():
            return
        start = time.monotonic()
        (r,), _ = exchange(port, b"GET /other%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
        latencies.append(time.monotonic() - start)
        assert json.loads(r.body)["path"] == f"/other{i}"
        time.sleep(0.05)


def _read_reply(sock: socket.socket) -> tuple[bytes, float]:
    buf = b""
    sock.settimeout(BOUND + MARGIN + WAIT)
    for _ in range(1000):
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        buf += chunk
    return buf, time.monotonic()


def _run_with_others(port: int, slow: Any) -> tuple[Any, list[float]]:
    stop = threading.Event()
    latencies: list[float] = []
    errors: list[BaseException] = []

    def others() -> None:
        try:
            _served_meanwhile(port, stop, latencies)
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=others)
    t.start()
    try:
        result = slow()
    finally:
        stop.set()
        t.join(WAIT)
    assert not errors, errors
    return result, latencies


def test_headers_one_byte_at_a_time_get_408_while_others_are_served(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, header_timeout=BOUND, body_timeout=BOUND) as s:
        def slow() -> tuple[bytes, float, float]:
            with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
                c.sendall(REQUEST[:5])               # "GET /": the protocol chain has its match
                start = time.monotonic()
                sent = 5
                while sent < len(REQUEST) and time.monotonic() - start < BOUND + MARGIN:
                    try:
                        c.sendall(REQUEST[sent:sent + 1])
                    except (BrokenPipeError, ConnectionResetError):
                        break
                    sent += 1
                    time.sleep(0.05)
                    c.setblocking(False)
                    try:
                        if c.recv(1, socket.MSG_PEEK):
                            break                    # the server has answered
                    except BlockingIOError:
                        pass
                    finally:
                        c.setblocking(True)
                buf, end = _read_reply(c)
                return buf, end - start, sent

        (buf, elapsed, sent), latencies = _run_with_others(s.port, slow)
    assert buf.startswith(b"HTTP/1.1 408 "), buf[:80]
    assert sent < len(REQUEST), "the head was still incomplete when the server answered"
    assert BOUND * 0.8 < elapsed < BOUND + MARGIN
    assert len(latencies) >= 3 and max(latencies) < BOUND, latencies


def test_stalled_body_gets_408_while_others_are_served(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, header_timeout=BOUND, body_timeout=BOUND) as s:
        def slow() -> tuple[bytes, float]:
            with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
                c.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
                start = time.monotonic()
                buf, end = _read_reply(c)
                return buf, end - start

        (buf, elapsed), latencies = _run_with_others(s.port, slow)
    assert buf.startswith(b"HTTP/1.1 408 "), buf[:80]
    assert b"connection: close" in buf
    assert BOUND * 0.8 < elapsed < BOUND + MARGIN
    assert len(latencies) >= 3 and max(latencies) < BOUND, latencies


def test_body_arriving_slowly_but_steadily_is_not_cut(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, header_timeout=BOUND, body_timeout=BOUND) as s:
        pieces = [b"POST /steady HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\n"] + [b"ab"] * 3
        (r,), _ = exchange(s.port, pieces, pause=BOUND * 0.5)   # 1.5 s in all, each gap under the bound
    assert r.status == 200 and json.loads(r.body)["body"] == "ababab"
