"""The dashboard behind ``--workers N --admin``: the snapshot and its event stream, summed over workers.

``GET /_plugins/dashboard/snapshot`` asks every worker for its snapshot and answers their sum
(:func:`covet_pipe.admin.summed.sum_snapshots`); ``GET /_plugins/events`` is the supervisor's own
stream of those sums, one a second, with the same limits as a worker's (``MAX_STREAM`` seconds a
stream, ``MAX_STREAMS`` at once, ended with the browser session it was opened with). The streams
share one sum made at most once per half interval, so an open dashboard costs each worker one
snapshot a second however many are open.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from covet_pipe.admin.events import INTERVAL, MAX_STREAM, MAX_STREAMS, RETRY_MS
from covet_pipe.admin.sessions import SESSIONS
from covet_pipe.admin.summed import sum_snapshots
from covet_pipe.logsafe import logger
from covet_pipe.server.admin_forward import forward

__all__ = ["SummedDashboard"]

SNAPSHOT = "/_plugins/dashboard/snapshot"
log = logger("covet_pipe.admin")


class SummedDashboard:
    """The summed snapshot and event streams of the workers that *workers()* lists."""

    def __init__(self, token: str, workers: Callable[[], list[tuple[int, int | None, str]]]) -> None:
        self.token = token
        self.workers = workers
        self.open_streams = 0
        self._recent: tuple[float, bytes] | None = None

    async def snapshot(self) -> tuple[int, bytes]:
        """(status, JSON body): the workers' sum, or 502 when none answered."""
        workers = self.workers()
        answers = await asyncio.gather(*(forward(slot, pid, path, "GET", SNAPSHOT, self.token, b"")
                                         for slot, pid, path in workers))
        docs: list[tuple[int, int | None, dict[str, Any] | None]] = []
        for a in answers:
            doc = a.document() if a.status == 200 else None
            docs.append((a.slot, a.pid, doc if isinstance(doc, dict) and "error" not in doc else None))
        try:
            summed = sum_snapshots(docs)
        except ValueError:
            return 502, b'{"error": "no worker answered; they may be restarting"}'
        return 200, json.dumps(summed, default=str, separators=(",", ":")).encode()

    async def _event(self) -> bytes:
        made = self._recent
        if made is not None and time.monotonic() - made[0] < INTERVAL / 2:
            return made[1]
        status, body = await self.snapshot()
        event = (b"data: " + body + b"\n\n") if status == 200 else \
            b'event: snapshot-failed\ndata: {"error": "no worker answered"}\n\n'
        self._recent = (time.monotonic(), event)
        return event

    def full(self) -> bool:
        return self.open_streams >= MAX_STREAMS

    async def events(self, cookie: bytes | None) -> AsyncGenerator[bytes, None]:
        """One stream: ``retry:``, then a summed snapshot a second until MAX_STREAM or the session ends."""
        self.open_streams += 1
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            ends = time.monotonic() + MAX_STREAM
            while time.monotonic() < ends:
                if cookie is not None and SESSIONS.remaining(cookie) <= 0:
                    yield b"event: session-ended\ndata: {}\n\n"
                    return
                yield await self._event()
                await asyncio.sleep(INTERVAL)
        finally:
            self.open_streams -= 1
