"""What the dashboard shows, as one snapshot: ``GET /_plugins/events`` sends one a second (SSE).

A snapshot holds the plugins (``list_plugins()``), the chain in request order and per protocol, the
health, and what the manager keeps of its history (reload history, recent errors, reload counts:
``None`` when this manager does not keep them). The stream ends when the client goes away (the app
stops it), when the session it was opened with ends or expires, or after ``MAX_STREAM`` seconds
(10); the browser's EventSource then connects again after the ``retry:`` delay, authenticated afresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from covet_pipe.admin.routes import AdminRequest, Stream
from covet_pipe.admin.sessions import SESSIONS, cookie_value
from covet_pipe.logsafe import logger

__all__ = ["INTERVAL", "MAX_STREAM", "MAX_STREAMS", "RETRY_MS", "events", "shared_event", "snapshot"]

INTERVAL = 1.0          #: seconds between two snapshots of a stream
RETRY_MS = 500          #: the reconnection delay the stream tells EventSource (``retry:``)
#: seconds one stream lasts at most; the browser reconnects. Short, because a server's graceful
#: shutdown waits for the responses in flight (uvicorn without end, ``covet-pipe serve`` 30 s): an
#: open dashboard holds a restart up by no more than this
MAX_STREAM = 10.0
#: the manager's history readers, by the snapshot key they fill (absent on a manager without history)
HISTORY = {"reloads": "reload_history", "errors": "recent_errors", "reload_counts": "reload_counts"}
log = logger("covet_pipe.admin")
MAX_STREAMS = 32        #: event streams open at once; past that 503 (each holds a connection and a task)
#: streams open now (a test checks that a client that leaves closes its stream)
open_streams = 0
#: manager -> (monotonic time, its last snapshot event), shared by the streams over that manager
_recent: weakref.WeakKeyDictionary[Any, tuple[float, bytes]] = weakref.WeakKeyDictionary()


def _plain(value: Any) -> Any:
    """*value* as JSON-able data: named tuples and dataclasses become dicts, the rest goes through as is."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _by_protocol(plugins: list[dict[str, Any]], chain: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Protocol -> the middleware that run on it, in request order (``*`` runs on every protocol)."""
    protocols = {p["name"]: set(p.get("protocols", ())) for p in plugins}
    every = {"http", "websocket"} | {x for ps in protocols.values() for x in ps if x != "*"}
    return {proto: [e["name"] for e in chain if {proto, "*"} & protocols.get(e["name"], {"http"})]
            for proto in sorted(every)}


async def snapshot(manager: Any) -> dict[str, Any]:
    """Everything the dashboard shows, read from *manager* now."""
    plugins = manager.list_plugins()
    chain = [e._asdict() for e in manager.get_middleware_chain()]
    out: dict[str, Any] = {
        "at": time.time(),
        "plugins": plugins,
        "chain": {"middleware": chain, "protocols": [r.name for r in manager.protocol_records()],
                  "by_protocol": _by_protocol(plugins, chain)},
        "health": await manager.get_health_status(),
    }
    for key, reader in HISTORY.items():
        read = getattr(manager, reader, None)
        out[key] = _plain(read()) if callable(read) else None
    return out


def _encode(document: Any) -> bytes:
    return b"data: " + json.dumps(document, default=str, separators=(",", ":")).encode() + b"\n\n"


async def shared_event(manager: Any) -> bytes:
    """The snapshot event of *manager*, made at most once per half INTERVAL whatever the number of streams.

    A snapshot of 100 plugins costs about 5 ms on the serving loop: every open dashboard must not
    add that again.
    """
    made = _recent.get(manager)
    if made is not None and time.monotonic() - made[0] < INTERVAL / 2:
        return made[1]
    event = _encode(await snapshot(manager))
    _recent[manager] = (time.monotonic(), event)
    return event


async def _ticks(manager: Any, cookie: bytes | None) -> AsyncIterator[bytes]:
    global open_streams
    open_streams += 1
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        ends = time.monotonic() + MAX_STREAM
        while time.monotonic() < ends:
            if cookie is not None and SESSIONS.remaining(cookie) <= 0:
                yield b"event: session-ended\ndata: {}\n\n"
                return
            try:
                event = await shared_event(manager)
            except Exception:       # to the log, never to the client; the browser connects again
                log.exception("admin: a snapshot for GET /_plugins/events raised; the stream ends")
                yield b'event: snapshot-failed\ndata: {"error": "internal error"}\n\n'
                return
            yield event
            await asyncio.sleep(INTERVAL)
    finally:
        open_streams -= 1


async def events(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    """``GET /_plugins/events``: a snapshot a second as server-sent events."""
    if open_streams >= MAX_STREAMS:
        return 503, {"error": f"{open_streams} event streams are open, the most there may be; close a "
                              "dashboard, or poll GET /_plugins/dashboard/snapshot"}
    cookie = None if request.headers.get(b"authorization") else cookie_value(request.headers)
    return 200, Stream("text/event-stream; charset=utf-8", _ticks(manager, cookie),
                       ((b"x-accel-buffering", b"no"),))
