"""``--workers N``: prometheus-client's multiprocess mode, so that one scrape shows every worker's sum.

The supervisor calls :func:`prepare` before it forks (a directory of mmap files, wiped at start:
``$PROMETHEUS_MULTIPROC_DIR`` when set, else a fresh one under the temp dir), :func:`process_dead`
for each worker that ends (its live gauges go) and :func:`finish` when it stops (a directory it made
is removed). Each worker writes its counters into its own files once a second and when it shuts down
(:class:`Flusher`): the core's counters only grow, so the worker adds what grew since its last
flush. A worker killed and started again comes back with a new pid, new files and counters from
zero: what the old one flushed stays in its files and is summed with the rest, never counted twice.
Between flushes a worker holds at most one second of counts; a SIGKILL loses those.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from covet_pipe.logsafe import logger
from covet_pipe.metrics.families import FAMILIES, Family, le_text
from covet_pipe.metrics.readings import Readings, read, read_server

__all__ = ["ENV", "FLUSH_INTERVAL", "Flusher", "enabled", "finish", "flusher", "prepare", "process_dead", "scrape"]

log = logger("covet_pipe.metrics")

#: set for the workers by the supervisor: the directory their metrics files go to
ENV = "COVET_PIPE_METRICS_DIR"
#: seconds between two flushes of a worker's counters
FLUSH_INTERVAL = 1.0

_made: str | None = None          # the directory prepare() created (finish() removes it)
_flusher: Flusher | None = None    # this process's, once a manager asked for it


def prepare() -> str:
    """Make (or wipe) the workers' metrics directory and point this process's environment at it."""
    global _made
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or ""
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = _made = tempfile.mkdtemp(prefix="covet-pipe-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.environ[ENV] = path
    return path


def process_dead(pid: int) -> None:
    """A worker ended: drop its live gauges (its counters stay and keep counting in the sum)."""
    path = os.environ.get(ENV)
    if not path:
        return
    from prometheus_client import multiprocess as mp
    mark: Callable[[int, str], None] = mp.mark_process_dead      # prometheus-client is untyped here
    mark(pid, path)


def finish() -> None:
    """The supervisor stops: remove the directory prepare() made (a given one is left as it is)."""
    global _made, _flusher
    if _flusher is not None:
        if _flusher.task is not None:
            _flusher.task.cancel()
        _flusher.close()
    _flusher = None                 # its files were in that directory
    os.environ.pop(ENV, None)
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == _made:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        _made = None


def enabled() -> bool:
    """Whether this process is a worker whose metrics go to the shared directory."""
    return bool(os.environ.get(ENV))


class Flusher:
    """Writes this worker's counters into its mmap files: what grew since the last flush.

    One a process: the server's counters once, and each manager's plugins (the listener's and, when an
    app wraps its own, that one's too); the same plugin name in two managers adds up, as on a scrape.
    """

    def __init__(self) -> None:
        self._value_class = _value_class()          # this process's files, named by its pid
        self._values: dict[tuple[Any, ...], Any] = {}
        self._last: dict[tuple[Any, ...], float] = {}
        self.managers: dict[int, Any] = {}
        self.pid = os.getpid()
        self.task: asyncio.Task[None] | None = None

    def _value(self, kind: str, family: Family, name: str, labelnames: tuple[str, ...],
               labelvalues: tuple[str, ...]) -> Any:
        key = (name, labelvalues)
        value = self._values.get(key)
        if value is None:
            value = self._values[key] = self._value_class(
                kind, family.name, name, list(labelnames), list(labelvalues), family.help,
                multiprocess_mode=family.mode)
        return value

    def _add(self, source: int, kind: str, family: Family, name: str, labelnames: tuple[str, ...],
             labelvalues: tuple[str, ...], now: float) -> None:
        key = (source, name, labelvalues)
        grew = now - self._last.get(key, 0.0)
        if grew < 0:                # the counter started again (its plugin was loaded anew)
            grew = now
        self._last[key] = now
        value = self._value(kind, family, name, labelnames, labelvalues)   # a 0 shows, as in one process
        if grew:
            value.inc(grew)

    def _write(self, source: int, readings: Readings, gauges: dict[tuple[str, tuple[str, ...]], float]) -> None:
        for family in FAMILIES:
            for labelvalues, value in readings.get(family.name, ()):
                if not isinstance(value, tuple):
                    if family.kind == "counter":
                        self._add(source, "counter", family, family.name + "_total", family.labels, labelvalues,
                                  value)
                    else:
                        key = (family.name, labelvalues)
                        gauges[key] = gauges.get(key, 0.0) + float(value)
                    continue
                bounds, counts, total = value
                names = family.labels + ("le",)
                for bound, n in zip(bounds, counts):
                    self._add(source, "histogram", family, family.name + "_bucket", names,
                              labelvalues + (le_text(bound),), float(n))
                self._add(source, "histogram", family, family.name + "_sum", family.labels, labelvalues, total)

    def flush(self) -> None:
        """Write what grew (counters, histogram buckets) and what is now (gauges, summed over the managers)."""
        gauges: dict[tuple[str, tuple[str, ...]], float] = {}
        self._write(0, read_server(), gauges)
        for source, manager in self.managers.items():
            self._write(source, read(manager, server=False), gauges)
        by_name = {f.name: f for f in FAMILIES}
        for (name, labelvalues), value in gauges.items():
            family = by_name[name]
            self._value("gauge", family, name, family.labels, labelvalues).set(value)

    def close(self) -> None:
        """Close this process's mmap files (its managers all stopped); a later flush opens them again and
        carries on from what they hold (what was last written is remembered, so nothing counts twice)."""
        closed: set[int] = set()
        for value in self._values.values():
            f = getattr(value, "_file", None)        # prometheus-client's MmapedDict of that value
            if f is not None and id(f) not in closed:
                closed.add(id(f))
                f.close()
        self._values.clear()
        self._value_class = _value_class()

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL seconds until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                self.flush()
        finally:
            self.flush()


def _value_class() -> Any:
    from prometheus_client import values
    make: Callable[[], Any] = values.MultiProcessValue      # prometheus-client leaves it untyped
    return make()


def flusher(manager: Any) -> Flusher | None:
    """This worker's flusher, now also for *manager*, its task running on this loop (None outside a worker)."""
    global _flusher
    if not enabled():
        return None
    if _flusher is None or _flusher.pid != os.getpid():    # a forked child starts its own
        _flusher = Flusher()
    _flusher.managers.setdefault(id(manager), manager)
    if _flusher.task is None or _flusher.task.done():
        _flusher.task = asyncio.get_running_loop().create_task(_flusher.run())
    return _flusher


async def stop(manager: Any) -> None:
    """*manager* stops: flush what it counted; the last one to stop ends the task (after a last flush)."""
    found = _flusher
    if found is None or found.pid != os.getpid() or id(manager) not in found.managers:
        return
    found.flush()
    del found.managers[id(manager)]
    if found.managers or found.task is None:
        return
    found.task.cancel()
    try:
        await found.task
    except asyncio.CancelledError:
        pass
    found.close()


def scrape(manager: Any) -> bytes:
    """Every worker's sum, in the text exposition format (this worker flushes first)."""
    from prometheus_client import multiprocess as mp
    from covet_pipe.metrics.text import render_metrics
    collector: Callable[..., Any] = mp.MultiProcessCollector
    found = flusher(manager)
    if found is not None:
        found.flush()
    merged = collector(None, path=os.environ[ENV])
    return render_metrics(merged.collect())
