"""What serves: the chain a pipeline reads, rebuilt from a registry as snapshots and drained when replaced.

A request runs to its end on the snapshot it started with, however many swaps happen meanwhile, so
``Snapshots`` keeps every replaced snapshot that still has requests in flight and a drain waits for
those too. Changes to what serves (starting, stopping, unloading, reloading plugins) are made one at
a time, under :meth:`Snapshots.lock`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from covet_pipe._core import Chain, Snapshot
from covet_pipe.registry import PluginRecord, Registry, make_entry, unavailable_entry

__all__ = ["Snapshots"]

log = logging.getLogger("covet_pipe.manager")


class Snapshots:
    """The chain over *registry*'s middleware, its snapshots, and the lock changes to them are made under.

    :param registry: the records snapshots are built from (its ``config.drain_timeout`` bounds drains).
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        #: what a pipeline serves from: ``chain.current`` (the snapshot) and ``chain.ready``
        self.chain = Chain(registry.services)
        #: the generation of the last snapshot built
        self.generation = 0
        #: the active protocol plugins in (priority, name) order, as of the last rebuild
        self.protocols: tuple[PluginRecord, ...] = ()
        #: replaced snapshots that still had requests in flight (drains wait on these too)
        self._retired: list[Snapshot] = []
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def current(self) -> Snapshot:
        """The snapshot new requests run on."""
        return self.chain.current

    def lock(self) -> asyncio.Lock:
        """The lock changes to what serves are made under: one per event loop (a server's loop replaces
        the one plugins were loaded on, ``asyncio.run()`` at import, say)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def rebuild(self) -> Snapshot:
        """Build a snapshot of the active middleware, swap it in, return the one it replaced."""
        registry = self.registry
        entries = []
        every = registry.every_protocol()
        for r in registry.records():
            if "middleware" not in r.kinds:
                continue
            if r.state == "active":
                entries.append(make_entry(r))
            elif r.state == "failed" and r.failure_policy == "closed":
                # Fail closed: a guard that could not load or start must not leave its requests unguarded.
                entries.append(unavailable_entry(r, every))
        self.generation += 1
        self.protocols = tuple(sorted(
            (r for r in registry.records() if "protocol" in r.kinds and r.state == "active"),
            key=lambda r: (r.priority, r.name)))
        old = self.chain.swap(Snapshot(entries, self.generation))
        self._retired = [s for s in self._retired if s.inflight > 0]
        if old.inflight > 0:
            self._retired.append(old)
        return old

    async def drain(self, snap: Snapshot, plugins: list[Any] | None = None) -> bool:
        """Wait (bounded by ``drain_timeout``) until no request runs on *snap*, nor on any older
        snapshot still in use that runs one of *plugins* (every plugin when None).

        :returns: False when the time ran out with requests still in flight (logged).
        """
        snaps = [s for s in {id(s): s for s in (*self._retired, snap)}.values() if s.inflight > 0
                 and (plugins is None or any(e.plugin is p for e in s.entries for p in plugins))]
        if not snaps:
            return True
        timeout = self.registry.config.drain_timeout
        loop = asyncio.get_running_loop()
        waits = []
        for s in snaps:
            done = loop.create_future()

            def idle(_snap: Snapshot, done: asyncio.Future[None] = done) -> None:
                if not done.done():
                    done.set_result(None)

            s.on_idle = idle
            waits.append(done)
        try:
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("%d request(s) still ran on chain generation(s) %s after %s s (drain_timeout); "
                        "shutting their plugins down anyway", sum(s.inflight for s in snaps),
                        ", ".join(str(s.generation) for s in snaps if s.inflight > 0), timeout)
            return False
        finally:
            for s in snaps:
                s.on_idle = None
