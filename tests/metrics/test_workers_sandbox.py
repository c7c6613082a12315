"""``--workers 3`` with the guard sandboxed: a helper SIGKILLed in one worker shows once in the summed scrape."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from covet_pipe.metrics.multiprocess import FLUSH_INTERVAL
from tests.metrics._served import children, get, scrape, serve, stop, value

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

WORKERS = 3
N = 60
SETTLE = FLUSH_INTERVAL + 1.0
WAIT = 30.0


def _helpers(supervisor: int) -> dict[int, int]:
    """helper pid -> the worker that started it."""
    out = {}
    for worker in children(supervisor):
        for pid in children(worker):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"covet_pipe.sandbox.helper_main" in cmd:
                out[pid] = worker
    return out


def _wait(what: str, cond):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out after {WAIT} s waiting for {what}")


def test_a_helper_killed_in_one_worker_counts_once_in_the_sum(tmp_path: Path) -> None:
    proc, base = serve(tmp_path, "--workers", str(WORKERS), env_extra={"METRICS_TEST_SANDBOX": "1"})
    try:
        for _ in range(N):
            assert get(base + "/deny")[0] == 403
        def in_every_worker() -> dict[int, int] | None:
            found = _helpers(proc.pid)
            return found if len(set(found.values())) == WORKERS else None

        helpers = _wait("a helper in every worker", in_every_worker)
        time.sleep(SETTLE)
        s = scrape(base)
        assert value(s, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == N
        assert value(s, "covet_pipe_sandbox_helper_ends_total", plugin="guard") == 0
        victim = min(helpers)
        os.kill(victim, signal.SIGKILL)
        def replaced() -> bool:
            now = _helpers(proc.pid)
            return len(now) == len(helpers) and victim not in now

        _wait("its replacement", replaced)
        # until the new helper has started, that worker's guard is unavailable (503)
        answers = {403: 0, 503: 0}
        deadline = time.monotonic() + WAIT
        streak = 0
        while streak < WORKERS * 3 and time.monotonic() < deadline:
            status = get(base + "/deny")[0]
            answers[status] += 1
            streak = streak + 1 if status == 403 else 0
            if status != 403:
                time.sleep(0.05)
        assert streak == WORKERS * 3, answers
        time.sleep(SETTLE)
        s = scrape(base)
        assert value(s, "covet_pipe_sandbox_helper_ends_total", plugin="guard") == 1
        assert value(s, "covet_pipe_sandbox_helper_restarts_total", plugin="guard") == 1
        assert value(s, "covet_pipe_sandbox_quarantined", plugin="guard") == 0
        assert value(s, "covet_pipe_plugin_short_circuits_total", plugin="guard", protocol="http",
                     status_class="4xx") == N + answers[403]
        assert value(s, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == \
            N + sum(answers.values())
        # an unavailable sandbox answers for its plugin (fail closed): a 503 short-circuit, not a hook error
        assert (value(s, "covet_pipe_plugin_short_circuits_total", plugin="guard", protocol="http",
                      status_class="5xx") or 0) == answers[503]      # a class shows once it has a count
        assert value(s, "covet_pipe_plugin_errors_total", plugin="guard", protocol="http") == 0
        assert value(s, "covet_pipe_http_responses_total", status_class="5xx") == answers[503]
    finally:
        stop(proc)
