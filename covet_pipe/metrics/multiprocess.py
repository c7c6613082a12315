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

__all__ = ["ENV", "FLUSH_INTERVAL", "Flusher", "enabled", "finish", "flusher", "prepare", "process_dead", "scrape"]

log = logger("covet_pipe.metrics")

#: set for the workers by the supervisor: the directory their metrics files go to
ENV = "COVET_PIPE_METRICS_DIR"
#: seconds between two flushes of a worker's counters
FLUSH_INTERVAL = 1.0

_made: str | None = None          # the directory prepare() created (finish() removes it)


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
    global _made
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
    """Writes this worker's counters into its mmap files: what grew since the last flush."""

    def __init__(self, manager: Any) -> None:
        from prometheus_client import values
        make: Callable[[], Any] = values.MultiProcessValue
        self.manager = manager
        self._value_class = make()                  # this process's files, named by its pid
        self._values: dict[tuple[Any, ...], Any] = {}
        self._last: dict[tuple[Any, ...], float] = {}
        self.pid = os.getpid()
        self.task: asyncio.Task[None] | None = None

    def _value(self, kind: str, family: Any, name: str, labelnames: tuple[str, ...],
               labelvalues: tuple[str, ...]) -> Any:
        key = (name, labelvalues)
        value = self._values.get(key)
        if value is None:
            value = self._values[key] = self._value_class(
                kind, family.name, name, list(labelnames), list(labelvalues), family.help,
                multiprocess_mode="livesum")
        return value

    def _add(self, kind: str, family: Any, name: str, labelnames: tuple[str, ...],
             labelvalues: tuple[str, ...], now: float) -> None:
        key = (name, labelvalues)
        grew = now - self._last.get(key, 0.0)
        if grew < 0:                # the counter started again (its plugin was loaded anew)
            grew = now
        self._last[key] = now
        if grew:
            self._value(kind, family, name, labelnames, labelvalues).inc(grew)

    def flush(self) -> None:
        """Write what grew (counters, histogram buckets) and what is now (gauges)."""
        from covet_pipe.metrics.families import FAMILIES
        from covet_pipe.metrics.readings import read
        from covet_pipe.metrics.families import le_text
        readings = read(self.manager)
        for family in FAMILIES:
            for labelvalues, value in readings.get(family.name, ()):
                if not isinstance(value, tuple):
                    if family.kind == "counter":
                        self._add("counter", family, family.name + "_total", family.labels, labelvalues, value)
                    else:
                        self._value("gauge", family, family.name, family.labels, labelvalues).set(float(value))
                else:
                    bounds, counts, total = value
                    names = family.labels + ("le",)
                    for bound, n in zip(bounds, counts):
                        le = le_text(bound)
                        self._add("histogram", family, family.name + "_bucket", names, labelvalues + (le,), float(n))
                    self._add("histogram", family, family.name + "_sum", family.labels, labelvalues, float(total))

    async def run(self) -> None:
        """Flush every FLUSH_INTERVAL seconds until cancelled, and once more then."""
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL)
                self.flush()
        finally:
            self.flush()


_flushers: dict[int, Flusher] = {}      # id(manager) -> this process's flusher


def flusher(manager: Any) -> Flusher | None:
    """This worker's flusher for *manager*, its task started on the running loop (None outside a worker)."""
    if not enabled():
        return None
    found = _flushers.get(id(manager))
    if found is None or found.pid != os.getpid():    # a forked child starts its own
        found = _flushers[id(manager)] = Flusher(manager)
    if found.task is None or found.task.done():
        found.task = asyncio.get_running_loop().create_task(found.run())
    return found


async def stop(manager: Any) -> None:
    """Stop this worker's flusher for *manager* after a last flush."""
    found = _flushers.pop(id(manager), None)
    if found is None or found.task is None or found.pid != os.getpid():
        return
    found.task.cancel()
    try:
        await found.task
    except asyncio.CancelledError:
        pass


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
