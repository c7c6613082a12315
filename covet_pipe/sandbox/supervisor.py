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
from covet_pipe.logsafe import printable
from covet_pipe.sandbox.channel import ChannelClosed, HostChannel, Reply

__all__ = ["SandboxSpec", "Supervisor", "SandboxUnavailable", "HelperProcess"]

log = logging.getLogger("covet_pipe.sandbox")

#: a helper that ends CRASH_BUDGET times within CRASH_WINDOW seconds is quarantined (no more restarts)
CRASH_BUDGET = 3
CRASH_WINDOW = 300.0
#: seconds a helper that closed its channel gets to exit by itself before it is killed
EXIT_GRACE = 1.0
#: restart delays: doubled per end within the crash window, capped
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0
#: lines of a helper's stderr kept for the error of a helper that dies at start; the longest line logged
OUTPUT_KEPT = 5
OUTPUT_LINE_MAX = 2000


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
        #: its last lines of stderr, escaped (a helper that dies at start is reported with them)
        self.last_output: deque[str] = deque(maxlen=OUTPUT_KEPT)

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
        self.cgroup, cgroup_missing = _cgroup_for(self.spec, self.proc.pid, self.index)
        self.channel = HostChannel(parent)
        self.channel.on_close = self._channel_closed
        await self.channel.start()
        if cgroup_missing is not None and "cgroup" in getattr(self.spec.policy, "require", ()):
            await self._abandon("a required layer is missing")
            raise PluginLoadError(f"{self.spec.path}: sandbox layer 'cgroup' is required but could not be put in "
                                  f"force: {cgroup_missing}; the plugin was not imported", path=self.spec.path)
        try:
            reply = await self.channel.call(
                "init", self.spec.start_timeout, policy=self.spec.policy.as_dict(), path=self.spec.path,
                config=self.spec.config, manifest={k: v for k, v in self.spec.manifest.items()
                                                   if k in ("name", "version")})
        except (asyncio.TimeoutError, ChannelClosed) as exc:
            why = await self._abandon("did not start") or str(exc)
            if "SIGKILL" in why and getattr(self.spec.policy, "memory_limit", None):
                why += f"; its memory_limit of {self.spec.policy.memory_limit} bytes is the likely cause: raise it"
            output = " | ".join(self.last_output) if self.last_output else "nothing"
            raise PluginLoadError(f"{self.spec.path}: the sandboxed helper did not start ({why}); its last "
                                  f"output on stderr: {output}", path=self.spec.path) from None
        if not reply.ok:
            await self._abandon("failed to start")
            raise PluginLoadError(f"{self.spec.path}: the sandboxed helper could not start the plugin: "
                                  f"{reply.error}", path=self.spec.path)
        self.meta = dict(reply.result or {})
        layers = self.meta.get("layers")
        if isinstance(layers, dict):
            layers["cgroup"] = self.cgroup.report() if self.cgroup is not None else False
            if cgroup_missing is not None and isinstance(layers.get("missing"), dict):
                layers["missing"]["cgroup"] = cgroup_missing
        return self.meta

    def _channel_closed(self, reason: str, broken: bool) -> None:
        """The helper's side ended the channel: a helper without its channel is of no use.

        A protocol violation ends it at once; a closed channel gets a moment to exit by itself (so its
        own exit status is what health reports), then it is killed too.
        """
        if broken:
            self._kill_now(reason)
        elif self.proc is not None and self.proc.returncode is None:
            asyncio.get_running_loop().call_later(
                EXIT_GRACE, self._kill_now, f"{reason} but did not exit")

    def _kill_now(self, because: str) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        if self.killed_because is None:
            self.killed_because = because
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def forsake(self, because: str) -> None:
        """End a helper whose event loop has ended: kill it and close its channel, awaiting nothing."""
        self._kill_now(because)
        if self.channel is not None:
            self.channel.forsake(because)
        # Close the process transport now (asyncio.subprocess.Process keeps it private): left to the
        # garbage collector, its close() would call into the ended loop and print a traceback.
        transport = getattr(self.proc, "_transport", None)
        if transport is not None:
            try:
                transport.close()
            except RuntimeError:    # "Event loop is closed": it is marked closed before that point
                pass

    async def _relay_stderr(self, logger: logging.Logger) -> None:
        """Copy the helper's stderr to the host log a line at a time, escaped: a plugin cannot forge lines."""
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                line = end.partial
            except asyncio.LimitOverrunError:
                line = await stream.read(64 * 1024)     # a line longer than the buffer: in pieces
            if not line:
                return
            if line.endswith(b"\n"):
                line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
            text = printable(line, limit=OUTPUT_LINE_MAX)
            self.last_output.append(text)
            logger.warning("[sandbox pid %s] %s", self.proc.pid, text)

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


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect a killed helper's exit status (its own loop, which would have, has ended)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return          # already collected (asyncio's child watcher thread, for one)
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.01)


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


def _cgroup_for(spec: SandboxSpec, pid: int, index: int) -> tuple[Any, str | None]:
    """The helper's cgroup, or None and why there is none."""
    policy = spec.policy
    try:
        from covet_pipe.sandbox import cgroups
    except ImportError as exc:
        return None, f"cgroups support cannot be imported: {exc}"
    if not cgroups.available():
        return None, f"cgroup v1 controllers missing: {cgroups.missing_controllers()}"
    try:
        group = cgroups.CgroupLimits.create(
            f"{os.getpid()}-{pid}-{index}", getattr(policy, "cpu_limit", None),
            getattr(policy, "memory_limit", None), getattr(policy, "pids_max", 8) or 8)
        group.add(pid)
        return group, None
    except OSError as exc:
        log.warning("cgroup limits for helper %s not applied: %s", pid, exc)
        return None, str(exc)


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
        self.helpers[i] = None
        if self.quarantined:            # a pool member ended with its quarantined plugin
            return
        why = helper.killed_because or describe_exit(code)
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
            if self.initialized:
                await self._initialize_helper(new)
            self.restarts += 1
        except Exception as exc:
            self.logger.error("sandboxed plugin %r: restart failed: %s", self.name, exc)
            self.quarantined = f"restart failed: {exc}"

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
        await asyncio.gather(*(asyncio.to_thread(_reap, h.pid) for h in stale if h.pid is not None))
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
            "recent_crashes": len(self.crashes),
            "last_failure": self.last_failure,
            "call_timeout": self.spec.call_timeout,
            "pool_size": len(self.helpers),
            "policy": self.spec.policy.as_dict(),
        }
