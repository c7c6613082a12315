"""Websocket handshakes that come with more bytes, or that websockets cannot read: always an answer.

Raw sockets against covet-pipe's listener and, for the refusals, against uvicorn+httptools with its
default websocket stack (websockets' sans-I/O protocol): the same status, then a closed connection.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.server.conftest import WAIT, echo_app, exchange

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: not a websocket frame (reserved bits set): what a confused client might send before the 101
GARBAGE = b"garbage, not a frame\r\n"


def _handshake(extra: bytes = b"", key: bool = True) -> bytes:
    return (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + (b"Sec-WebSocket-Key: " + KEY + b"\r\n" if key else b"")
            + b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n")


def _masked_text(text: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(text)]) + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(text))


#: id -> (raw bytes, the status both answer); the app is echo_app, which never accepts a websocket
REFUSALS: dict[str, tuple[bytes, int]] = {
    # the app returned without accepting: 500 (the bytes after the request do not change that)
    "then-garbage": (_handshake() + GARBAGE, 500),
    "then-a-frame": (_handshake() + _masked_text(b"hi"), 500),
    # RFC 6455 4.2.1: no Sec-WebSocket-Key is a bad handshake: 400
    "no-key-then-garbage": (_handshake(key=False) + GARBAGE, 400),
    # more header fields than websockets reads (128): 431
    "too-many-headers": (_handshake(b"".join(b"X-%d: v\r\n" % i for i in range(130))), 431),
}


@pytest.fixture(scope="module")
def servers() -> Any:
    from tests.conftest import Served
    from tests.server.conftest import CovetServer
    with Served(echo_app, http="httptools", lifespan="on") as uv, CovetServer(echo_app) as cp:
        yield uv.port, cp.port


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refused_handshakes_are_answered_as_uvicorn_answers(servers: Any, case: str) -> None:
    raw, status = REFUSALS[case]
    uv_port, cp_port = servers
    uv, uv_closed = exchange(uv_port, raw)
    cp, cp_closed = exchange(cp_port, raw)
    assert [r.status for r in uv] == [status] and uv_closed, f"uvicorn answered {uv}"
    assert [r.status for r in cp] == [status]
    assert cp_closed


async def _echo_ws(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": "echo:" + (msg.get("text") or "")})


def _talk(port: int, raw: bytes, until: bytes | None = None) -> tuple[bytes, bool]:
    """Send *raw*; read until *until* has arrived (None: until the server closes): the bytes, and
    whether the server closed."""
    data = b""
    deadline = time.monotonic() + WAIT
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        c.sendall(raw)
        while (until is None or until not in data) and time.monotonic() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                return data, True
            data += chunk
        c.settimeout(0.5)
        try:
            closed = c.recv(4096) == b""
        except socket.timeout:
            closed = False
    return data, closed


def test_a_frame_sent_with_the_handshake_reaches_the_app_once_accepted(covet_server: Any) -> None:
    with covet_server(_echo_ws) as s:
        data, closed = _talk(s.port, _handshake() + _masked_text(b"early"), b"echo:early")
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert frames == b"\x81\x0aecho:early"
    assert not closed


def test_garbage_sent_with_the_handshake_fails_the_websocket_after_the_101(covet_server: Any) -> None:
    with covet_server(_echo_ws) as s:
        data, closed = _talk(s.port, _handshake() + GARBAGE)
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert frames[:1] == b"\x88" and frames[2:4] == b"\x03\xea"      # a close frame, 1002 (protocol error)
    assert closed
