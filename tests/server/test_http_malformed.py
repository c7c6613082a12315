"""Mutated requests (a seeded, bounded corpus): answers are HTTP statuses, never a traceback or a crash."""

from __future__ import annotations

import logging
import random
from typing import Any

from tests.server.conftest import exchange

SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"HEAD /h HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
]
CASES = 150


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        op, i = rnd.random(), rnd.randrange(len(b) + 1)
        if op < 0.4 and b:
            b[min(i, len(b) - 1)] = rnd.randrange(256)
        elif op < 0.7:
            b[i:i] = bytes([rnd.choice(b"\r\n :/?%\x00a0")]) * rnd.randint(1, 3)
        elif b:
            del b[min(i, len(b) - 1)]
    return bytes(b) * rnd.choice([1, 1, 2])


def test_mutated_requests_get_statuses_and_no_server_errors(covet_server: Any, echo: Any, caplog: Any) -> None:
    rnd = random.Random(20261125)
    seen: dict[int, int] = {}
    with caplog.at_level(logging.WARNING), covet_server(echo, header_timeout=1, body_timeout=1) as s:
        for _ in range(CASES):
            replies, _closed = exchange(s.port, _mutate(rnd, rnd.choice(SEEDS)), expect=3, timeout=0.3)
            for r in replies:
                seen[r.status] = seen.get(r.status, 0) + 1
                assert b"Traceback" not in r.body and b"File \"" not in r.body
    assert set(seen) <= {200, 400, 408, 413, 431}, seen
    assert seen.get(400, 0) > CASES // 3 and seen.get(200, 0) > 0, seen
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert errors == [], [r.getMessage() for r in errors]
