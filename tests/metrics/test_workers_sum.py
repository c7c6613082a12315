"""``covet-pipe serve --workers 3``: one scrape shows the sum over the workers, also after one is SIGKILLed."""

from __future__ import annotations

import time
from pathlib import Path

from covet_pipe.metrics.multiprocess import FLUSH_INTERVAL
from tests.metrics._served import ADMIN_TOKEN, get, kill_one_worker, scrape, serve, stop, value, write_app

WORKERS = 3
N = 120         #: requests the app answers, each on its own connection (spread over the workers)
K = 12          #: requests the guard rejects
SETTLE = FLUSH_INTERVAL + 1.0      #: every worker has flushed what it counted before this


def test_a_scrape_sums_the_workers_and_a_killed_worker_loses_nothing(tmp_path: Path) -> None:
    files = tmp_path / "multiproc"
    files.mkdir()
    (files / "counter_1.db").write_bytes(b"a stale file of an earlier run")
    proc, base = serve(tmp_path, "--workers", str(WORKERS), env_extra={"PROMETHEUS_MULTIPROC_DIR": str(files)})
    try:
        assert not (files / "counter_1.db").exists()          # wiped at start
        pids = set()
        for _ in range(N):
            status, headers, _ = get(base + "/")
            assert status == 200
            pids.add(headers["x-pid"])
        assert len(pids) >= 2, pids      # the kernel spread the connections: the sum is over several workers
        for _ in range(K):
            assert get(base + "/deny")[0] == 403
        time.sleep(SETTLE)
        s = scrape(base)
        assert value(s, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == N + K
        assert value(s, "covet_pipe_plugin_short_circuits_total", plugin="guard", protocol="http",
                     status_class="4xx") == K
        assert value(s, "covet_pipe_http_responses_total", status_class="2xx") == N
        assert value(s, "covet_pipe_http_responses_total", status_class="4xx") == K
        assert value(s, "covet_pipe_http_request_duration_seconds_count") == N + K
        time.sleep(SETTLE)
        chosen = int(min(pids))                # a worker that served: it has counters to keep
        assert (files / f"gauge_livesum_{chosen}.db").exists() and (files / f"counter_{chosen}.db").exists()
        victim, fresh = kill_one_worker(proc, WORKERS, victim=chosen)
        assert get(base + "/")[0] == 200 and victim != fresh
        # marked dead: its live gauges are gone, its counters stay in the sum
        assert not (files / f"gauge_livesum_{victim}.db").exists()
        assert (files / f"counter_{victim}.db").exists()
        time.sleep(SETTLE)
        after = scrape(base)
        # what the killed worker had flushed is still in the sum; the new one adds from zero
        assert value(after, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == N + K + 1
        assert value(after, "covet_pipe_plugin_short_circuits_total", plugin="guard", protocol="http",
                     status_class="4xx") == K
        assert value(after, "covet_pipe_http_responses_total", status_class="2xx") == N + 1 + 1   # + the scrape
        assert value(after, "covet_pipe_http_request_duration_seconds_count") == N + K + 1 + 1
        # the live gauges of the dead worker are gone: open connections are those of the live ones
        assert value(after, "covet_pipe_http_open_connections") >= 1
        # a reload through the admin API in one worker
        write_app(tmp_path, version="2.0.0")
        status, _, body = get(base + "/_plugins/guard/reload", method="POST", token=ADMIN_TOKEN)
        assert status == 200, body
        time.sleep(SETTLE)
        last = scrape(base)
        if get(base + "/probe")[2] == b"yes":
            assert value(last, "covet_pipe_plugin_reloads_total", plugin="guard") == 1
        assert value(last, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == N + K + 1
    finally:
        stop(proc)
    assert files.is_dir()           # a directory the operator gave is left where it was
