"""RateLimit across real processes: two `covet-pipe serve --workers 2` "hosts" sharing one real Redis hold
one global limit (a few seconds of concurrent clients); with storage='memory' and --workers 2 the server
log warns that the limit is per worker."""

from __future__ import annotations

import time
from pathlib import Path

from covet_pipe.metrics.multiprocess import FLUSH_INTERVAL
from tests._process import stop
from tests._redis import RealRedis, real_redis  # noqa: F401  (fixture)
from tests.builtin._rate_limit_fleet import hammer, start_host, wait_serving
from tests.metrics._served import SCRAPE_TOKEN, scrape, value

RATE = 50           # per second: far below what the clients offer, so the limit is what binds
BURST = 10          # some tolerance: with burst 0 every late arrival loses its slot and far fewer pass
SECONDS = 3.0


def test_two_hosts_of_two_workers_hold_one_global_limit(tmp_path: Path, real_redis: RealRedis) -> None:
    plugin = f'RateLimit(routes={{"/x": "{RATE}/second"}}, burst={BURST}, key="global", storage="{real_redis.url}")'
    hosts = [start_host(tmp_path / f"host{i}", plugin=plugin, workers=2, metrics_token=SCRAPE_TOKEN)
             for i in range(2)]
    try:
        ports = [port for _, port, _ in hosts]
        for port in ports:
            wait_serving(port)        # on /ready, which no route limits: the bucket of /x stays whole
        run = hammer(ports, seconds=SECONDS, per_port=3)
        time.sleep(FLUSH_INTERVAL + 1.0)     # every worker has flushed its counts
        scrapes = [scrape(f"http://127.0.0.1:{port}") for port in ports]
    finally:
        for proc, _, _ in hosts:
            stop(proc)
    counts = run.counts
    allowed, refused = run.allowed, counts.get(429, 0)
    # GCRA's bound between the first allowed answer and the last: the burst, then the rate
    expected = 1 + BURST + RATE * run.ok_window
    assert counts.get(-1, 0) == 0 and set(counts) <= {200, 429}, counts
    assert refused > allowed, counts                      # the clients did offer more than the limit
    assert abs(allowed - expected) / expected < 0.05, (allowed, expected, counts)
    for _, _, log in hosts:
        text = log.read_text()
        assert "Traceback" not in text and "each worker's own memory" not in text, text
    # each host's scrape sums its workers; the two hosts' sums are what the clients saw
    for decision, seen in (("allowed", allowed), ("limited", refused)):
        total = sum(value(s, "covet_pipe_ratelimit_decisions_total", plugin="rate_limit", decision=decision) or 0
                    for s in scrapes)
        assert total == seen, (decision, total, seen)
    assert all(value(s, "covet_pipe_ratelimit_backend_failures_total", plugin="rate_limit") == 0 for s in scrapes)


def test_memory_mode_under_several_workers_warns_in_the_server_log(tmp_path: Path) -> None:
    proc, port, log = start_host(tmp_path, plugin='RateLimit("100/second")', workers=2)
    try:
        wait_serving(port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and log.read_text().count("each worker's own memory") < 2:
            time.sleep(0.1)
    finally:
        stop(proc)
    text = log.read_text()
    assert text.count("each worker's own memory") == 2, text          # one line per worker
    assert "2 workers serve" in text and "up to 2 times '100/second'" in text
    assert "storage='redis://...'" in text
