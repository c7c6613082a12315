"""One sandboxed helper process: started confined, its channel, its cgroup, its exit, reaped."""

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

__all__ = ["SandboxSpec", "HelperProcess", "describe_exit", "reap"]

log = logging.getLogger("covet_pipe.sandbox")

#: seconds a helper that closed its channel gets to exit by itself before it is killed
EXIT_GRACE = 1.0
#: lines of a helper's stderr kept for the error of a helper that dies at start; the longest line logged
OUTPUT_KEPT = 5
OUTPUT_LINE_MAX = 2000


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
    #: its content-hash pin (the plugin_hashes key, ``sha256:HEX``), checked before every helper starts
    pin: tuple[str, str] | None = None


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


def reap(pid: int, timeout: float = 5.0) -> None:
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
