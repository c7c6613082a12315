"""Supervising sandboxed helpers: start, deadlines, restarts with backoff, crash budget, quarantine."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from covet_pipe.errors import PluginLoadError
from covet_pipe.sandbox.channel import ChannelClosed, HostChannel, Reply

__all__ = ["SandboxSpec", "Supervisor", "SandboxUnavailable", "HelperProcess"]

log = logging.getLogger("covet_pipe.sandbox")

#: a helper that crashes this often is quarantined (VS Code's extension host rule)
CRASH_BUDGET = 3
CRASH_WINDOW = 300.0
#: restart delays: doubled per consecutive crash, capped
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class SandboxUnavailable(Exception):
    """No helper can take the call (dead, restarting, quarantined, or it overran its deadline)."""


@dataclass
class SandboxSpec:
    """What to run in a helper: a plugin file or package, its settings and its policy."""

    path: str
    policy: Any                         # covet_pipe.sandbox.policy.SandboxPolicy
    config: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    pool_size: int = 1
    call_timeout: float = 5.0
    start_timeout: float = 20.0


class HelperProcess:
    """One helper process: its channel, its pid, what confinement it reported."""

    def __init__(self, spec: SandboxSpec, index: int) -> None:
        self.spec = spec
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.channel: HostChannel | None = None
        self.meta: dict[str, Any] = {}
        self.cgroup: Any = None
        self.killed_because: str | None = None
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return (self.proc is not None and self.proc.returncode is None and self.channel is not None
                and self.channel.closed_reason is None)

    async def start(self, logger: logging.Logger) -> dict[str, Any]:
        """Start the interpreter, confine it, import the plugin; return what it reported."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # A fresh interpreter, never a fork of the host: nothing of the host's memory goes in.
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", "covet_pipe.sandbox.helper_main", str(child.fileno()),
                env={"MALLOC_ARENA_MAX": "1", "PYTHONDONTWRITEBYTECODE": "1"},
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            child.close()
        self._stderr_task = asyncio.get_running_loop().create_task(self._relay_stderr(logger))
        self.cgroup = _cgroup_for(self.spec, self.proc.pid, self.index)
        self.channel = HostChannel(parent)
        await self.channel.start()
        try:
            reply = await self.channel.call(
                "init", self.spec.start_timeout, policy=self.spec.policy.as_dict(), path=self.spec.path,
                config=self.spec.config, manifest={k: v for k, v in self.spec.manifest.items()
                                                   if k in ("name", "version")})
        except (asyncio.TimeoutError, ChannelClosed) as exc:
            why = await self._abandon("did not start")
            raise PluginLoadError(f"{self.spec.path}: the sandboxed helper did not start ({why or exc}); "
                                  "see the log above for its error output", path=self.spec.path) from None
        if not reply.ok:
            await self._abandon("failed to start")
            raise PluginLoadError(f"{self.spec.path}: the sandboxed helper could not start the plugin: "
                                  f"{reply.error}", path=self.spec.path)
        self.meta = dict(reply.result or {})
        return self.meta

    async def _relay_stderr(self, logger: logging.Logger) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            logger.warning("[sandbox pid %s] %s", self.proc.pid, line.decode("utf-8", "replace").rstrip()[:2000])

    async def _abandon(self, because: str) -> str | None:
        """Kill a helper that did not start and reap it (no process or pipe left behind)."""
        await self.kill(because)
        try:
            return describe_exit(await asyncio.wait_for(self.wait(), 5))
        except asyncio.TimeoutError:
            return None

    async def call(self, op: str, timeout: float, **fields: Any) -> Reply:
        if self.channel is None:
            raise ChannelClosed("not started")
        return await self.channel.call(op, timeout, **fields)

    async def kill(self, because: str) -> None:
        """SIGKILL the helper (its whole session) and close the channel."""
        if self.killed_because is None:
            self.killed_because = because
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.channel is not None:
            await self.channel.close()

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        if self.channel is not None:
            await self.channel.close()
        if self._stderr_task is not None:
            try:
                await asyncio.wait_for(self._stderr_task, 1)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._stderr_task.cancel()
        if self.cgroup is not None:
            try:
                self.cgroup.remove()
            except OSError as exc:
                log.warning("could not remove the cgroup of helper %s: %s", self.proc.pid, exc)
        return code


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = {"SIGSYS": "a system call the sandbox forbids (kill rule)",
               "SIGKILL": "killed (by the host, or the memory limit)",
               "SIGXCPU": "its CPU time limit", "SIGSEGV": "a crash (segfault)"}.get(name, "")
        return f"killed by {name}" + (f": {why}" if why else "")
    return f"exited with status {code}"


def _cgroup_for(spec: SandboxSpec, pid: int, index: int) -> Any:
    policy = spec.policy
    try:
        from covet_pipe.sandbox import cgroups
    except ImportError:
        return None
    if not cgroups.available():
        return None
    try:
        group = cgroups.CgroupLimits.create(
            f"{os.getpid()}-{pid}-{index}", getattr(policy, "cpu_limit", None),
            getattr(policy, "memory_limit", None), getattr(policy, "pids_max", 8) or 8)
        group.add(pid)
        return group
    except OSError as exc:
        log.warning("cgroup limits for helper %s not applied: %s", pid, exc)
        return None


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
        self.quarantined: str | None = None
        self.closing = False
        self.initialized = False
        self._init_config: dict[str, Any] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._restarting: set[int] = set()
        self._backoff = BACKOFF_FIRST

    async def start(self) -> dict[str, Any]:
        """Start every helper of the pool; return the plugin's metadata."""
        try:
            for i in range(len(self.helpers)):
                await self._start_one(i)
        except BaseException:
            await self.shutdown()      # the helpers that did start
            raise
        return self.meta

    async def _start_one(self, i: int) -> HelperProcess:
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
            await h.kill(f"overran its deadline of {self.spec.call_timeout} s")
            raise SandboxUnavailable(f"call {op!r} overran its deadline of {self.spec.call_timeout} s") from None
        except ChannelClosed as exc:
            raise SandboxUnavailable(f"the helper went away: {exc}") from None

    async def kill_helper(self, h: HelperProcess, because: str) -> None:
        """End a helper that broke the protocol (a malformed or invalid reply)."""
        await h.kill(because)

    async def _watch(self, i: int, helper: HelperProcess) -> None:
        code = await helper.wait()
        if self.closing or self.helpers[i] is not helper:
            return
        why = helper.killed_because or describe_exit(code)
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        self.helpers[i] = None
        if code == -signal.SIGSYS:
            self.quarantined = f"helper {helper.pid} broke a kill rule ({describe_exit(code)})"
        elif len(self.crashes) >= CRASH_BUDGET:
            self.quarantined = (f"{len(self.crashes)} crashes within {CRASH_WINDOW:.0f} s "
                                f"(the last: {why})")
        if self.quarantined:
            self.logger.error("sandboxed plugin %r quarantined: %s; it answers by its failure policy until "
                              "reloaded", self.name, self.quarantined)
            return
        self.logger.error("sandboxed plugin %r: helper %s ended (%s); restarting in %.1f s", self.name,
                          helper.pid, why, self._backoff)
        await asyncio.sleep(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        if self.closing:
            return
        try:
            new = await self._start_one(i)
            if self.initialized:
                await self._initialize_helper(new)
            self.restarts += 1
            self._backoff = BACKOFF_FIRST if self.restarts and len(self.crashes) <= 1 else self._backoff
        except Exception as exc:
            self.logger.error("sandboxed plugin %r: restart failed: %s", self.name, exc)
            self.quarantined = f"restart failed: {exc}"

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Call the plugin's shutdown() in each helper, then end them (killing what lingers)."""
        self.closing = True
        for helper in self.helpers:
            if helper is None:
                continue
            if helper.alive:
                try:
                    await helper.call("shutdown", timeout)
                except (asyncio.TimeoutError, ChannelClosed):
                    pass
            if helper.proc is not None:
                try:
                    await asyncio.wait_for(helper.proc.wait(), timeout)
                except asyncio.TimeoutError:
                    await helper.kill("did not exit after shutdown")
        for task in self._watchers:
            try:
                await asyncio.wait_for(task, timeout)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        # A helper that exits takes its channel's in-flight calls with it.
        for helper in self.helpers:
            if helper is not None and helper.proc is not None and helper.proc.returncode is None:
                await helper.kill("shut down")

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
            "recent_crashes": len(self.crashes),
            "policy": self.spec.policy.as_dict(),
        }
