"""Per-helper cgroup (v1) limits set by the host: a CPU quota, a real memory limit and a task cap.

The host creates the group right after it starts a helper, moves the helper's pid in, and removes
the group when the helper has ended. Groups live under ``/sys/fs/cgroup/<controller>/covet-pipe/<name>``.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CgroupLimits", "available", "missing_controllers", "ROOT", "CONTROLLERS"]

ROOT = "/sys/fs/cgroup"
CONTROLLERS = ("cpu", "memory", "pids")
PARENT = "covet-pipe"
#: cfs period: 100 ms, so a 0.8 share is 80 ms of CPU in every 100 ms
CPU_PERIOD_US = 100_000


def _hierarchy(controller: str) -> str:
    return os.path.join(ROOT, controller)


def missing_controllers() -> dict[str, str]:
    """Controllers that cannot be used here, each with the reason (empty: all of cpu, memory, pids work)."""
    probes = {"cpu": "cpu.cfs_quota_us", "memory": "memory.limit_in_bytes", "pids": "cgroup.procs"}
    out = {}
    for c in CONTROLLERS:
        path = _hierarchy(c)
        if not os.path.isfile(os.path.join(path, probes[c])):
            out[c] = f"no cgroup v1 '{c}' hierarchy at {path}"
        elif not os.access(path, os.W_OK):
            out[c] = f"{path} is not writable by this process"
    return out


def available() -> bool:
    """True when at least one of the cpu, memory and pids controllers can be used."""
    return len(missing_controllers()) < len(CONTROLLERS)


def _write(path: str, value: Any) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(f"{value}\n")


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


@dataclass
class CgroupLimits:
    """One helper's groups, one per controller that is available."""

    name: str
    #: controller -> group folder
    paths: dict[str, str] = field(default_factory=dict)
    #: what was set, for health: {"cpu_quota": 0.8, "memory_bytes": ..., "pids_max": ...}
    limits: dict[str, Any] = field(default_factory=dict)
    #: controller -> why it is not used
    missing: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, name: str, cpu_limit: float | None, memory_bytes: int | None,
               pids_max: int | None) -> CgroupLimits:
        """Make the groups and set the limits (None: that limit is not set, the group still counts usage).

        :raises OSError: when a group cannot be created or a limit is refused (the groups made are removed).
        """
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name in (".", ".."):
            raise ValueError(f"cgroup name {name!r}: use letters, digits, '_', '.' and '-'")
        group = cls(name, missing=missing_controllers())
        try:
            for c in CONTROLLERS:
                if c in group.missing:
                    continue
                parent = os.path.join(_hierarchy(c), PARENT)
                os.makedirs(parent, exist_ok=True)
                path = os.path.join(parent, name)
                os.mkdir(path)
                group.paths[c] = path
            if "cpu" in group.paths and cpu_limit is not None:
                _write(os.path.join(group.paths["cpu"], "cpu.cfs_period_us"), CPU_PERIOD_US)
                _write(os.path.join(group.paths["cpu"], "cpu.cfs_quota_us"), max(1000, int(cpu_limit * CPU_PERIOD_US)))
                group.limits["cpu_quota"] = cpu_limit
            if "memory" in group.paths and memory_bytes is not None:
                mem = group.paths["memory"]
                _write(os.path.join(mem, "memory.limit_in_bytes"), memory_bytes)
                if os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")):
                    # memory + swap: without it a helper could page out past its limit where swap exists
                    _write(os.path.join(mem, "memory.memsw.limit_in_bytes"), memory_bytes)
                group.limits["memory_bytes"] = memory_bytes
            if "pids" in group.paths and pids_max is not None:
                _write(os.path.join(group.paths["pids"], "pids.max"), pids_max)
                group.limits["pids_max"] = pids_max
        except BaseException:
            group.remove()
            raise
        return group

    def add(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into every group."""
        for path in self.paths.values():
            _write(os.path.join(path, "cgroup.procs"), pid)

    def pids(self) -> list[int]:
        """The processes in the groups now."""
        found: set[int] = set()
        for path in self.paths.values():
            try:
                found.update(int(x) for x in _read(os.path.join(path, "cgroup.procs")).split())
            except OSError:
                pass
        return sorted(found)

    def stats(self) -> dict[str, Any]:
        """Usage counters for health: memory in use and its peak, throttled CPU periods, tasks."""
        out: dict[str, Any] = {}
        try:
            if "memory" in self.paths:
                mem = self.paths["memory"]
                out["memory_bytes"] = int(_read(os.path.join(mem, "memory.usage_in_bytes")))
                out["memory_peak_bytes"] = int(_read(os.path.join(mem, "memory.max_usage_in_bytes")))
                out["memory_limit_hits"] = int(_read(os.path.join(mem, "memory.failcnt")))
                for line in _read(os.path.join(mem, "memory.oom_control")).splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        out["memory_oom_kills"] = int(value)
            if "cpu" in self.paths:
                for line in _read(os.path.join(self.paths["cpu"], "cpu.stat")).splitlines():
                    key, _, value = line.partition(" ")
                    out[f"cpu_{key}"] = int(value)
            if "pids" in self.paths:
                out["tasks"] = int(_read(os.path.join(self.paths["pids"], "pids.current")))
        except (OSError, ValueError):
            pass
        return out

    def report(self) -> dict[str, Any]:
        """The ``cgroup`` entry of a helper's layers in health."""
        return {"controllers": sorted(self.paths), "limits": dict(self.limits), "missing": dict(self.missing)}

    def remove(self, timeout: float = 2.0) -> None:
        """Remove the groups once the helper has ended.

        A task still listed (a zombie not yet reaped, or a straggler) is first moved to the parent
        group (``tasks``), since cgroup v1 refuses to remove a group that holds tasks.

        :raises OSError: when a group still cannot be removed after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for c, path in list(self.paths.items()):
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    self._evict(path)
                    time.sleep(0.01)
            del self.paths[c]

    @staticmethod
    def _evict(path: str) -> None:
        try:
            tasks = _read(os.path.join(path, "tasks")).split()
        except OSError:
            return
        parent_tasks = os.path.join(os.path.dirname(path), "tasks")
        for tid in tasks:
            try:
                _write(parent_tasks, tid)
            except OSError:
                pass  # the task ended meanwhile
