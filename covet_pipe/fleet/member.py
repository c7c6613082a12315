"""One worker's place in the fleet: what it published, what it applied, how far it is, what did not match.

:class:`Fleet` is what a PluginManager with ``PluginConfig(fleet=...)`` holds. A reload made here
(:meth:`Fleet.reload`: the file watcher's, the admin API's, ``covet-pipe reload``'s, a call of
``reload_plugin``) runs, then is published with the content hash this worker loaded. A change from
another worker is applied (:meth:`Fleet.apply`) by reloading the plugin from this host's own file,
only when that file's hash is the change's; otherwise the mismatch is logged and kept for health,
and looked at again every few seconds (a deploy that lands later is picked up). A change applied from
the fleet is never published again, and a worker never applies its own.

Generations: ``generation`` is the highest one this worker has handled (every change up to it is
applied or reported); ``stored_generation`` the fleet's counter as last read. On every (re)connect the
worker reads each plugin's latest change and applies those past its generation, then publishes the
changes it made while Redis was out of reach. A Redis that comes back without its data (a counter
below this worker's generation) is converged to from zero again: the content hashes make applying
what this worker already runs a no-op.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from covet_pipe.config import PluginConfig
from covet_pipe.errors import ConfigError
from covet_pipe.fleet.listener import Listener
from covet_pipe.fleet.message import Change, FleetMessageError, decode
from covet_pipe.fleet.store import keys_for, publish, publisher, read_state
from covet_pipe.fleet.verify import file_hash, local_hash, mismatch
from covet_pipe.logsafe import logger, printable
from covet_pipe.redis_url import connect, describe
from covet_pipe.registry import Registry

__all__ = ["Fleet", "PUBLISH_TIMEOUT", "RECENT", "RECHECK"]

log = logger("covet_pipe.fleet")

#: applied changes health keeps (with their propagation delay)
RECENT = 50
#: seconds between two looks at the files of mismatched plugins
RECHECK = 2.0
#: seconds a publish may take before the change waits for Redis to be back
PUBLISH_TIMEOUT = 2.0
#: at most one log line about refused messages in this many seconds (health counts them all)
BAD_LOG_EVERY = 10.0


class Fleet:
    """This worker in the fleet *config.fleet_name* on Redis *config.fleet*.

    :param reload_here: reloads one plugin on this worker without publishing (the manager's own reload).
    """

    def __init__(self, config: PluginConfig, registry: Registry,
                 reload_here: Callable[[str], Awaitable[None]]) -> None:
        assert config.fleet is not None
        self.name = config.fleet_name
        self.url = config.fleet
        self.registry = registry
        self._reload_here = reload_here
        self.keys = keys_for(self.name)
        #: this worker's id in the messages it publishes
        self.origin = f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.config = config
        self.client: Any = None
        self._script: Any = None
        self.generation = 0
        self.stored_generation = 0
        self.connected = False
        #: plugin -> the content hash of the version this worker runs
        self.applied: dict[str, str] = {}
        #: plugin -> the change this host did not load, and why
        self.mismatches: dict[str, dict[str, Any]] = {}
        self.last_mismatch: dict[str, Any] | None = None
        #: plugin -> a change made here while Redis was out of reach (published on reconnect)
        self.pending: dict[str, Change] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.counts = {"published": 0, "applied": 0, "current": 0, "failed": 0, "bad_messages": 0}
        self.last_error: str | None = None
        #: a local reload and an applied change, one at a time (one lock per event loop)
        self._lock_of: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        self._rechecked = 0.0
        self._last_message = 0      # the generation of the last message of this subscription
        self._bad_logged = -BAD_LOG_EVERY
        self.listener: Listener | None = None
        self._based = False

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock_of is None or self._lock_of[1] is not loop:
            self._lock_of = (asyncio.Lock(), loop)
        return self._lock_of[0]

    # -- start and stop ----------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and listen on the running loop (idempotent; again after :meth:`stop`).

        At the first start the plugins were just loaded from their files, so this worker runs their content.
        """
        if self.listener is not None and self.listener.running:
            return
        if not self._based:
            self._based = True
            for record in self.registry.records():
                digest = file_hash(self.registry, record.name)
                if digest is not None:
                    self.applied.setdefault(record.name, digest)
        config = self.config
        try:
            self.client = connect(self.url, password_file=config.fleet_password_file,
                                  password_env=config.fleet_password_env, timeout=PUBLISH_TIMEOUT,
                                  who=f"fleet {self.name!r}", health_check_interval=5)
        except ValueError as exc:       # the password file cannot be read, the variable is not set
            raise ConfigError(str(exc), field="fleet_password_file") from None
        self._script = publisher(self.client)
        self.listener = Listener(self.client, self.keys.channel, on_connect=self._converge,
                                 on_message=self._on_message, on_lost=self._on_lost, on_idle=self._on_idle,
                                 name=f"covet-pipe fleet {self.name}")
        self.listener.start()
        log.info("fleet %r: worker %s joins through %s", self.name, self.origin, describe(self.url))

    async def stop(self) -> None:
        """Stop listening and close the connections; changes made meanwhile wait in ``pending``."""
        listener, client, self.listener, self.client, self._script = self.listener, self.client, None, None, None
        self.connected = False
        if listener is not None:
            await listener.stop()
        if client is not None:
            try:
                await asyncio.wait_for(client.aclose(), 2.0)
            except (asyncio.TimeoutError, Exception):
                pass

    # -- changes made here ---------------------------------------------------------------------------

    async def reload(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run a reload made on this worker (*run* raises when it fails: nothing is published), then publish it."""
        async with self._lock():
            await run()
            digest = await local_hash(self.registry, name)
            if digest is None:
                return
            self.applied[name] = digest
            self.mismatches.pop(name, None)
            await self._publish(Change(0, name, digest, self.origin, time.time()))

    async def _publish(self, change: Change) -> None:
        if not self.connected or self._script is None:
            self.pending[change.plugin] = change
            log.warning("fleet %r: Redis is out of reach; the reload of %r is published when it is back",
                        self.name, change.plugin)
            return
        try:
            generation = await asyncio.wait_for(publish(self._script, self.keys, change), PUBLISH_TIMEOUT)
        except (asyncio.TimeoutError, Exception) as exc:
            self.pending[change.plugin] = change
            self.last_error = f"publish: {type(exc).__name__}: {printable(str(exc), 300)}"
            log.warning("fleet %r: could not publish the reload of %r (%s); it is published when Redis is back",
                        self.name, change.plugin, self.last_error)
            return
        self.pending.pop(change.plugin, None)
        self.counts["published"] += 1
        self.stored_generation = max(self.stored_generation, generation)
        log.info("fleet %r: reload of %r published as generation %d", self.name, change.plugin, generation)

    # -- changes from the fleet ---------------------------------------------------------------------

    async def apply(self, change: Change) -> str:
        """Apply another worker's change here: "applied", "current" (it runs that content), "mismatch", "failed"."""
        async with self._lock():
            if self.applied.get(change.plugin) == change.hash:
                self.mismatches.pop(change.plugin, None)
                self.counts["current"] += 1
                return "current"
            why = await mismatch(self.registry, change.plugin, change.hash)
            if why is not None:
                entry = {"plugin": change.plugin, "generation": change.generation, "expected": change.hash,
                         "origin": change.origin, "error": why, "at": time.time()}
                self.mismatches[change.plugin] = self.last_mismatch = entry
                log.error("fleet %r: generation %d not loaded: %s", self.name, change.generation, why)
                return "mismatch"
            try:
                await self._reload_here(change.plugin)
            except Exception as exc:       # the old version keeps serving; the reload history has it too
                self.counts["failed"] += 1
                self.last_error = f"generation {change.generation}: reload of {change.plugin!r} failed: " \
                                  f"{printable(str(exc), 300)}"
                log.error("fleet %r: %s", self.name, self.last_error)
                return "failed"
            self.applied[change.plugin] = change.hash
            self.mismatches.pop(change.plugin, None)
            self.counts["applied"] += 1
            self.recent.append({"generation": change.generation, "plugin": change.plugin, "origin": change.origin,
                                "delay_s": round(max(0.0, time.time() - change.at), 6)})
            log.info("fleet %r: generation %d applied: %r reloaded (from %s)", self.name, change.generation,
                     change.plugin, printable(change.origin, 200))
            return "applied"

    async def _on_message(self, data: bytes) -> None:
        try:
            change = decode(data)
        except FleetMessageError as exc:
            self.counts["bad_messages"] += 1
            now = time.monotonic()
            if now - self._bad_logged >= BAD_LOG_EVERY:     # a flood of junk is not a flood of log lines
                self._bad_logged = now
                log.warning("fleet %r: a message on %s was refused (%d so far): %s", self.name, self.keys.channel,
                            self.counts["bad_messages"], exc)
            return
        if change.generation <= self._last_message:
            # One subscription hands the changes over in the order of their generations: a counter that
            # went back was reset (FLUSHALL, a Redis replaced without this connection noticing).
            log.warning("fleet %r: generation %d came after %d: the counter in Redis was reset; converging again",
                        self.name, change.generation, self._last_message)
            await self._converge()
            return
        self._last_message = change.generation
        self.stored_generation = max(self.stored_generation, change.generation)
        if change.generation <= self.generation:
            return                  # handled already (converged past it)
        if change.origin != self.origin:
            await self.apply(change)
        self.generation = change.generation
        await self._on_idle()       # a steady stream of changes leaves no idle moment for the look at the files

    async def _converge(self) -> None:
        """Connected (again): apply each plugin's latest change past this worker's generation, publish the pending."""
        self._last_message = 0       # a new subscription, or one whose counter went back
        state = await read_state(self.client, self.keys)
        for why in state.bad:
            log.warning("fleet %r: a stored change was refused: %s", self.name, why)
        if state.generation < self.generation:
            log.warning("fleet %r: the stored generation %d is below this worker's %d (Redis lost its data?); "
                        "converging from 0 again", self.name, state.generation, self.generation)
            self.generation = 0
            self.stored_generation = 0
        for change in state.latest:
            if change.generation > self.generation and change.origin != self.origin:
                await self.apply(change)
        self.generation = max(self.generation, state.generation)
        self.stored_generation = max(self.stored_generation, state.generation)
        was = self.connected
        self.connected = True
        if not was:
            log.info("fleet %r: connected to %s at generation %d", self.name, describe(self.url), self.generation)
        async with self._lock():       # no local reload of the same plugin publishes in between
            for change in list(self.pending.values()):
                await self._publish(change)

    def _on_lost(self, why: str) -> None:
        self.last_error = why
        if self.connected:
            log.warning("fleet %r: lost Redis at %s (%s); local reloads go on, the fleet converges when it is "
                        "back", self.name, describe(self.url), why)
        self.connected = False

    async def _on_idle(self) -> None:
        """Every few seconds: a mismatched plugin whose file now matches is loaded."""
        now = time.monotonic()
        if not self.mismatches or now - self._rechecked < RECHECK:
            return
        self._rechecked = now
        for entry in list(self.mismatches.values()):
            if await local_hash(self.registry, entry["plugin"]) == entry["expected"]:
                await self.apply(Change(entry["generation"], entry["plugin"], entry["expected"], entry["origin"],
                                        time.time()))

    # -- health ---------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The fleet as this worker sees it (JSON-safe)."""
        return {"name": self.name, "redis": describe(self.url), "worker": self.origin, "connected": self.connected,
                "generation": self.generation, "stored_generation": self.stored_generation,
                "pending": sorted(self.pending), "mismatches": {k: dict(v) for k, v in sorted(self.mismatches.items())},
                "last_mismatch": None if self.last_mismatch is None else dict(self.last_mismatch),
                "last_error": self.last_error, "counts": dict(self.counts), "recent": list(self.recent)}

    def overall(self, status: str) -> str:
        """The manager's overall *status*, made "degraded" while a change did not match this host's file."""
        return "degraded" if status == "ok" and self.mismatches else status

