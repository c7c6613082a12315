"""The fleet's pub/sub listener: subscribe, converge, hand each message on; reconnect when Redis goes.

:class:`Listener` runs one task on the serving loop. Each round subscribes to the fleet's channel
first and only then calls ``on_connect`` (the worker reads the stored state and converges to it), so
no change published in between is lost: it waits in the subscription and is handed to ``on_message``
after. When the connection fails (Redis stopped, a partition: redis-py's health check pings an idle
subscription every few seconds) the round ends, ``on_lost`` is told, and the next round starts after a
pause that doubles from 0.1 s up to :data:`MAX_PAUSE`. While no message comes, ``on_idle`` is called
about once a second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from covet_pipe.logsafe import logger, printable

__all__ = ["Listener", "MAX_PAUSE"]

log = logger("covet_pipe.fleet")

#: the longest pause between two attempts to reach Redis (seconds)
MAX_PAUSE = 1.0
#: how long one wait for a message lasts before ``on_idle`` (seconds)
IDLE = 1.0


class Listener:
    """Subscribes *client* to *channel* and hands what comes to the callbacks, reconnecting for ever."""

    def __init__(self, client: Any, channel: str, *, on_connect: Callable[[], Awaitable[None]],
                 on_message: Callable[[bytes], Awaitable[None]], on_lost: Callable[[str], None],
                 on_idle: Callable[[], Awaitable[None]], name: str = "covet-pipe fleet") -> None:
        self.client = client
        self.channel = channel
        self.on_connect, self.on_message, self.on_lost, self.on_idle = on_connect, on_message, on_lost, on_idle
        self.name = name
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        #: rounds that ended with an error (for health and tests)
        self.failures = 0
        self._busy = False      # a callback runs (stop lets it finish); else it waits on Redis (stop cancels)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task on the running loop (idempotent)."""
        if self.running:
            return
        self._stop = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self, timeout: float = 5.0) -> None:
        """End the task (a change being applied finishes first, bounded by *timeout*)."""
        task, self._task = self._task, None
        if self._stop is not None:
            self._stop.set()
        if task is None or task.done():
            return
        try:
            if not self._busy:
                raise asyncio.TimeoutError      # waiting for a message: nothing to finish
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        assert self._stop is not None
        pause = 0.1
        while not self._stop.is_set():
            if await self._round():
                pause = 0.1             # it was connected: try again soon
            try:
                await asyncio.wait_for(self._stop.wait(), pause)
            except asyncio.TimeoutError:
                pass
            pause = min(MAX_PAUSE, pause * 2)

    async def _round(self) -> bool:
        """One subscription, until it fails or the listener stops; whether it got as far as converging."""
        assert self._stop is not None
        pubsub = self.client.pubsub()
        converged = False
        try:
            await pubsub.subscribe(self.channel)
            await self._call(self.on_connect())
            converged = True
            while not self._stop.is_set():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=IDLE)
                if message is None:
                    await self._call(self.on_idle())
                elif message.get("type") == "message":
                    await self._call(self.on_message(message["data"]))
        except asyncio.CancelledError:
            raise
        except Exception as exc:    # ConnectionError, TimeoutError, a refused AUTH ...: try again
            self.failures += 1
            self.on_lost(f"{type(exc).__name__}: {printable(str(exc), 300)}")
        finally:
            try:
                await asyncio.wait_for(pubsub.aclose(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        return converged

    async def _call(self, step: Awaitable[None]) -> None:
        self._busy = True
        try:
            await step
        finally:
            self._busy = False
