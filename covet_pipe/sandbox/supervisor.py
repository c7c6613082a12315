"""Supervising sandboxed helpers: start, deadlines, restarts with backoff, crash budget, quarantine."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from pathlib import Path
from typing import Any

from covet_pipe.pinning import check_pin, path_hash
from covet_pipe.sandbox.channel import ChannelClosed, Reply
from covet_pipe.sandbox.helper_process import HelperProcess, SandboxSpec, describe_exit, reap

__all__ = ["SandboxSpec", "Supervisor", "SandboxUnavailable", "HelperProcess"]

log = logging.getLogger("covet_pipe.sandbox")

#: a helper that ends CRASH_BUDGET times within CRASH_WINDOW seconds is quarantined (no more restarts)
CRASH_BUDGET = 3
CRASH_WINDOW = 300.0
#: restart delays: doubled per end within the crash window, capped
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class SandboxUnavailable(Exception):
    """No helper can take the call (dead, restarting, quarantined, or it overran its deadline)."""


class _ClosedLoopWarnings(logging.Filter):
    """asyncio's child watcher warns "Loop ... that handles pid N is closed" when a helper of an ended loop
    exits; for the helpers the supervisor itself ended and restarted, that is expected, not news."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Loop %r that handles pid %r is closed" and isinstance(record.args, tuple) \
                and len(record.args) == 2 and record.args[1] in self.pids:
            self.pids.discard(record.args[1])
            return False
        return True


_quiet_closed_loop_warnings = _ClosedLoopWarnings()
logging.getLogger("asyncio").addFilter(_quiet_closed_loop_warnings)


class Supervisor:
    """A pool of helpers for one sandboxed plugin, kept alive within a crash budget."""

    def __init__(self, spec: SandboxSpec, name: str = "?") -> None:
        self.spec = spec
        self.name = name
        self.logger = logging.getLogger(f"covet_pipe.plugins.{name}")
        self.helpers: list[HelperProcess | None] = [None] * max(1, spec.pool_size)
        self.meta: dict[str, Any] = {}
        self.crashes: deque[float] = deque()
        self.restarts = 0
        #: helpers that ended unexpectedly, helpers this supervisor killed, quarantines (for metrics)
        self.ends = 0
        self.kills = 0
        self.quarantines = 0
        self.quarantined: str | None = None
        #: why the last helper ended unexpectedly (None until one does)
        self.last_failure: str | None = None
        self.closing = False
        self.initialized = False
        self._init_config: dict[str, Any] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._restarting: set[int] = set()
        #: the event loop the helpers were started on (their pipes and watchers belong to it)
        self.loop: asyncio.AbstractEventLoop | None = None

    def moved(self) -> bool:
        """True when the pool was started on another event loop than the running one."""
        return self.loop is not None and self.loop is not asyncio.get_running_loop()

    async def start(self) -> dict[str, Any]:
        """Start every helper of the pool; return the plugin's metadata."""
        self.loop = asyncio.get_running_loop()
        try:
            for i in range(len(self.helpers)):
                await self._start_one(i)
        except BaseException:
            await self.shutdown(call_plugin=False)      # the helpers that did start
            raise
        return self.meta

    async def _start_one(self, i: int) -> HelperProcess:
        if self.spec.pin is not None:     # the file is read again by each helper: still the pinned one?
            check_pin(self.spec.pin, path_hash(Path(self.spec.path)), self.spec.path)
        helper = HelperProcess(self.spec, i)
        meta = await helper.start(self.logger)
        self.meta = meta
        self.name = meta.get("name") or self.name
        self.logger = logging.getLogger(f"covet_pipe.plugins.{self.name}")
        self.helpers[i] = helper
        self._watchers.append(asyncio.get_running_loop().create_task(self._watch(i, helper)))
        return helper

    async def initialize(self, config: dict[str, Any]) -> None:
        self._init_config = dict(config)
        for helper in self.helpers:
            if helper is not None and helper.alive:
                await self._initialize_helper(helper)
        self.initialized = True

    async def _initialize_helper(self, helper: HelperProcess) -> None:
        reply = await helper.call("initialize", self.spec.call_timeout * 4, config=self._init_config)
        if not reply.ok:
            raise RuntimeError(f"initialize() raised in the sandbox: {reply.error}")

    def pick(self) -> HelperProcess:
        """The live helper with the fewest calls in flight."""
        if self.quarantined:
            raise SandboxUnavailable(f"quarantined: {self.quarantined}")
        live = [h for h in self.helpers if h is not None and h.alive]
        if not live:
            raise SandboxUnavailable("no helper is running (restarting)")
        return min(live, key=lambda h: h.channel.in_flight if h.channel else 0)

    async def call(self, op: str, helper: HelperProcess | None = None, **fields: Any) -> tuple[HelperProcess, Reply]:
        """One call to a helper, under the per-call deadline.

        :raises SandboxUnavailable: the helper is gone, or overran the deadline (it is then killed).
        """
        h = helper if helper is not None else self.pick()
        try:
            return h, await h.call(op, self.spec.call_timeout, **fields)
        except asyncio.TimeoutError:
            self.kills += 1
            await h.kill(f"overran its deadline of {self.spec.call_timeout} s")
            raise SandboxUnavailable(f"call {op!r} overran its deadline of {self.spec.call_timeout} s") from None
        except ChannelClosed as exc:
            raise SandboxUnavailable(f"the helper went away: {exc}") from None

    async def kill_helper(self, h: HelperProcess, because: str) -> None:
        """End a helper that broke the protocol (a malformed or invalid reply)."""
        self.kills += 1
        await h.kill(because)

    async def _watch(self, i: int, helper: HelperProcess) -> None:
        code = await helper.wait()
        if self.closing or self.helpers[i] is not helper:
            return
        self.helpers[i] = None
        if self.quarantined:            # a pool member ended with its quarantined plugin
            return
        why = helper.killed_because or describe_exit(code)
        self.ends += 1
        self.last_failure = f"helper {helper.pid}: {why}"
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        if code == -signal.SIGSYS:
            self.quarantined = f"helper {helper.pid} broke a kill rule ({describe_exit(code)})"
        elif len(self.crashes) >= CRASH_BUDGET:
            self.quarantined = (f"{len(self.crashes)} crashes within {CRASH_WINDOW:.0f} s "
                                f"(the last: {why})")
        if self.quarantined:
            self.quarantines += 1
            self.logger.error("sandboxed plugin %r quarantined: %s; it answers by its failure policy until "
                              "reloaded", self.name, self.quarantined)
            for other in self.helpers:  # the rest of its pool goes too
                if other is not None:
                    other._kill_now("its plugin was quarantined")
            return
        # 0.1 s after one end within the crash window, doubled for each further one, capped.
        delay = min(BACKOFF_FIRST * 2 ** (len(self.crashes) - 1), BACKOFF_MAX)
        self.logger.error("sandboxed plugin %r: helper %s ended (%s); restarting in %.1f s", self.name,
                          helper.pid, why, delay)
        await asyncio.sleep(delay)
        if self.closing:
            return
        try:
            new = await self._start_one(i)
            if self.closing or self.quarantined:    # shut down or quarantined while it started
                new._kill_now("shut down" if self.closing else "its plugin was quarantined")
                return
            # counted as it joins the pool (health lists it from now on), not after its initialize
            self.restarts += 1
            if self.initialized:
                await self._initialize_helper(new)
        except Exception as exc:
            self.logger.error("sandboxed plugin %r: restart failed: %s", self.name, exc)
            self.quarantined = f"restart failed: {exc}"
            self.quarantines += 1

    async def restart(self) -> None:
        """Start the pool anew on the running loop: after a shutdown, or when the loop that started it is gone.

        The second case is a plugin loaded under ``asyncio.run()`` before the server's loop began: its helpers
        are bound to that finished loop, so they are ended and new ones start here.
        """
        if self.moved():
            await self._forsake_all("its event loop ended before it served; restarted on the serving loop")
        self.helpers = [None] * len(self.helpers)
        self._watchers = []
        self.closing = False
        self.quarantined = None
        self.crashes.clear()
        self.initialized = False
        await self.start()
        self.logger.info("sandboxed plugin %r: helpers started on the serving loop (pids %s)", self.name,
                         ", ".join(str(h.pid) for h in self.helpers if h is not None))

    async def _forsake_all(self, because: str) -> None:
        stale = [h for h in self.helpers if h is not None]
        _quiet_closed_loop_warnings.pids.update(h.pid for h in stale if h.pid is not None)
        for h in stale:
            h.forsake(because)
        await asyncio.gather(*(asyncio.to_thread(reap, h.pid) for h in stale if h.pid is not None))
        for h in stale:
            if h.cgroup is not None:
                try:
                    h.cgroup.remove()
                except OSError as exc:
                    log.warning("could not remove the cgroup of helper %s: %s", h.pid, exc)
        self.helpers = [None] * len(self.helpers)
        self._watchers = []     # tasks of the ended loop: never to run again

    async def shutdown(self, timeout: float = 5.0, *, call_plugin: bool = True) -> None:
        """Call the plugin's shutdown() in each helper (at once), then end them, killing what lingers.

        With ``call_plugin=False`` (a plugin that never started) the helpers are only ended. Cancelling
        the shutdown still kills every helper.
        """
        self.closing = True
        if self.moved():        # started on a loop that has ended: nothing of theirs can be awaited here
            await self._forsake_all("shut down")
            return
        try:
            await asyncio.gather(*(self._stop(h, timeout, call_plugin) for h in self.helpers if h is not None))
        finally:
            self.abort("shut down")
        # Collect the exits (each watcher removes its helper's cgroup), bounded.
        deadline = time.monotonic() + timeout
        while True:
            pending = [t for t in self._watchers if not t.done()]
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            await asyncio.wait(pending, timeout=left)
        for task in self._watchers:
            if not task.done():
                task.cancel()

    async def _stop(self, helper: HelperProcess, timeout: float, call_plugin: bool) -> None:
        if helper.alive:
            if call_plugin:
                try:
                    await helper.call("shutdown", timeout)
                except (asyncio.TimeoutError, ChannelClosed):
                    pass
            elif helper.channel is not None:
                await helper.channel.close()        # the helper reads the end of its channel and exits
        if helper.proc is not None:
            try:
                await asyncio.wait_for(helper.proc.wait(), timeout)
            except asyncio.TimeoutError:
                await helper.kill("did not exit after shutdown")

    def abort(self, because: str) -> None:
        """Kill every helper now (no await): the plugin's failure policy answers from then on."""
        self.closing = True
        for helper in self.helpers:
            if helper is not None:
                helper._kill_now(because)

    def health(self) -> dict[str, Any]:
        live = [h for h in self.helpers if h is not None and h.alive]
        return {
            "sandboxed": True,
            "state": "quarantined" if self.quarantined else "serving" if live else "restarting",
            "quarantined": self.quarantined,
            "helpers": [{"pid": h.pid, "in_flight": h.channel.in_flight if h.channel else 0}
                        for h in live],
            "layers": self.meta.get("layers"),
            "restarts": self.restarts,
            "ends": self.ends,
            "kills": self.kills,
            "quarantines": self.quarantines,
            "recent_crashes": len(self.crashes),
            "last_failure": self.last_failure,
            "call_timeout": self.spec.call_timeout,
            "pool_size": len(self.helpers),
            "policy": self.spec.policy.as_dict(),
        }
