"""``--workers N``: N forked processes, each with its own SO_REUSEPORT socket, supervised.

The parent binds nothing that accepts: it reserves the port (a bound, non-listening
SO_REUSEPORT socket, so ``port=0`` resolves once for all workers), forks the workers and
waits on them. A worker that dies is forked again (with a back-off when it keeps dying at
start). SIGTERM or SIGINT to the parent sends SIGTERM to every worker, waits for their
graceful shutdown (``shutdown_timeout`` plus a margin), then kills what is left. The workers'
metrics go to one directory of files (:mod:`covet_pipe.metrics.multiprocess`), so a scrape of
any worker shows their sum.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from typing import Any

from covet_pipe.metrics import multiprocess
from covet_pipe.server.admin_fanout import FanOutPort
from covet_pipe.server.admin_port import admin_companions
from covet_pipe.server.config import ServeConfig
from covet_pipe.server.listener import bind_socket, run_process

__all__ = ["supervise"]

log = logging.getLogger("covet_pipe.server")

#: a worker that dies sooner than this after its start counts as a crash at start
QUICK_DEATH = 1.0
#: the longest pause between restarts of a worker that keeps crashing at start
MAX_BACKOFF = 5.0


#: set for the workers to the number of them: a plugin can tell it is one of several
WORKERS_ENV = "COVET_PIPE_WORKERS"

#: a worker's exit code when strict mode refused to start: starting it again cannot help
REFUSED = 78


def _worker(app: Any, manager: Any, config: ServeConfig, plugin_dirs: list[str] | None) -> None:
    from covet_pipe.errors import StrictError
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        run_process(app, manager, config, plugin_dirs=plugin_dirs, reuse_port=True, companions=admin_companions)
    except StrictError as exc:
        sys.stderr.write(f"covet-pipe serve: {exc}\n")
        sys.stderr.flush()
        os._exit(REFUSED)


class StrictRefused(Exception):
    """A worker refused to start in strict mode: the supervisor stops them all."""


class _Supervisor:
    def __init__(self, app: Any, manager: Any, config: ServeConfig, plugin_dirs: list[str] | None) -> None:
        self.ctx = multiprocessing.get_context("fork")
        self.app = app
        self.manager = manager
        self.plugin_dirs = plugin_dirs
        self.reserved = bind_socket(config, reuse_port=True, listen=False)
        port = self.reserved.getsockname()[1]
        # each worker: one process, the resolved port
        self.config = dataclasses.replace(config, workers=1, port=port)
        self.stopping = False
        self.procs: dict[int, Any] = {}          # slot -> Process
        self.started_at: dict[int, float] = {}
        self.backoff: dict[int, float] = {}
        # --admin: the supervisor serves the admin port and forwards each call to every worker
        self.admin = FanOutPort(self.config, self._pids) if config.admin is not None else None

    def _pids(self) -> list[tuple[int, int | None]]:
        return [(slot, proc.pid) for slot, proc in sorted(list(self.procs.items()))]

    def spawn(self, slot: int) -> None:
        proc = self.ctx.Process(target=_worker, name=f"covet-pipe-worker-{slot}",
                                args=(self.app, self.manager, self._worker_config(slot), self.plugin_dirs))
        proc.start()
        self.procs[slot] = proc
        self.started_at[slot] = time.monotonic()
        log.info("covet-pipe worker %d started (pid %d) on http://%s:%d", slot, proc.pid,
                 self.config.host, self.config.port)

    def _worker_config(self, slot: int) -> ServeConfig:
        return self.admin.worker_config(self.config, slot) if self.admin is not None else self.config

    def run(self, workers: int) -> None:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        multiprocess.prepare()      # the workers' metrics files: one scrape sums them
        # what a plugin reads to know it is one of several workers (RateLimit warns of per-worker limits)
        os.environ[WORKERS_ENV] = str(workers)
        try:
            for slot in range(workers):
                self.spawn(slot)
            if self.admin is not None:
                self.admin.start()
            while not self.stopping:
                wait([p.sentinel for p in self.procs.values()], timeout=0.5)
                if self.stopping:
                    break
                for slot, proc in list(self.procs.items()):
                    if proc.is_alive():
                        continue
                    proc.join(0)
                    multiprocess.process_dead(proc.pid)
                    if proc.exitcode == REFUSED:
                        raise StrictRefused(f"covet-pipe worker {slot} refused to start (strict); see above")
                    log.warning("covet-pipe worker %d (pid %d) exited with %s; starting a new one",
                                slot, proc.pid, proc.exitcode)
                    self._restart(slot)
        finally:
            if self.admin is not None:
                self.admin.stop()
            self._stop_all()
            multiprocess.finish()
            os.environ.pop(WORKERS_ENV, None)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.reserved.close()

    def _restart(self, slot: int) -> None:
        lived = time.monotonic() - self.started_at[slot]
        if lived < QUICK_DEATH:
            delay = min(MAX_BACKOFF, max(0.1, self.backoff.get(slot, 0.05) * 2))
            self.backoff[slot] = delay
            deadline = time.monotonic() + delay
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.stopping:
                return
        else:
            self.backoff.pop(slot, None)
        self.spawn(slot)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.config.shutdown_timeout + 5.0
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("covet-pipe worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join(5)


def supervise(app: Any, manager: Any, config: ServeConfig, *, plugin_dirs: list[str] | None = None) -> None:
    """Run ``config.workers`` worker processes until SIGTERM/SIGINT (blocking)."""
    _Supervisor(app, manager, config, plugin_dirs).run(config.workers)
