"""RateLimit with its buckets in a real redis-server: shared by two pipelines (two "workers"), one Lua
step reloaded after SCRIPT FLUSH (NOSCRIPT), the failure policies with Redis stopped and started again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from covet_pipe.builtin import RateLimit, RedisRateLimit
from covet_pipe.ratelimit import outage
from tests._redis import RealRedis, real_redis  # noqa: F401  (fixture)
from tests.builtin._rate_limit_apps import pipeline


async def test_two_pipelines_share_one_limit_in_redis(real_redis: RealRedis) -> None:
    a = RateLimit("4/minute", burst=3, storage=real_redis.url, key="global", name="rl")
    b = RateLimit("4/minute", burst=3, storage=real_redis.url, key="global", name="rl")
    assert isinstance(a, RedisRateLimit)
    async with pipeline(a) as one, pipeline(b) as two:
        got = [await one.get(), await two.get(), await one.get(), await two.get(), await one.get(),
               await two.get()]
    assert [r.status for r in got] == [200, 200, 200, 200, 429, 429]
    assert [r.headers["ratelimit-remaining"] for r in got] == ["3", "2", "1", "0", "0", "0"]
    assert got[4].headers["retry-after"] == "15" and got[4].headers["ratelimit-reset"] == "60"
    assert a.metadata()["storage"] == real_redis.url
    check = redis_asyncio.Redis.from_url(real_redis.url)
    try:
        keys = await check.keys("covet-pipe:rl:rl:*")
        assert keys == [b"covet-pipe:rl:rl:{*|*}:4/minute"]
        ttl = await check.pttl(keys[0])
        assert 59_000 < ttl <= 60_001            # a bucket lives as long as it holds something
    finally:
        await check.aclose()


async def test_concurrent_requests_never_pass_more_than_the_limit(real_redis: RealRedis) -> None:
    plugins = [RateLimit("20/hour", burst=19, storage=real_redis.url, key="global", name="rl") for _ in range(3)]
    async with pipeline(plugins[0]) as p0, pipeline(plugins[1]) as p1, pipeline(plugins[2]) as p2:
        got = await asyncio.gather(*(p.get() for _ in range(30) for p in (p0, p1, p2)))
    assert sum(r.status == 200 for r in got) == 20
    assert sum(r.status == 429 for r in got) == 70


async def test_a_flushed_script_is_loaded_again(real_redis: RealRedis) -> None:
    plugin = RateLimit("2/hour", burst=1, storage=real_redis.url, key="global")
    async with pipeline(plugin) as s:
        assert (await s.get()).status == 200
        admin = redis_asyncio.Redis.from_url(real_redis.url)
        try:
            await admin.script_flush()
            assert await admin.script_exists(plugin.store.script.sha) == [False]
            assert (await s.get()).status == 200            # NOSCRIPT, loaded again, decided
            assert await admin.script_exists(plugin.store.script.sha) == [True]
        finally:
            await admin.aclose()
        assert (await s.get()).status == 429
    assert plugin.metadata()["backend_failures"] == 0


async def test_redis_down_open_lets_through_logs_once_and_recovers(real_redis: RealRedis, caplog: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RECHECK", 0.2)
    caplog.set_level(logging.WARNING, logger="covet_pipe.ratelimit")
    plugin = RateLimit("1/hour", storage=real_redis.url, key="global", failure_policy="open", name="rl")
    async with pipeline(plugin) as s:
        assert [(await s.get()).status for _ in range(2)] == [200, 429]
        real_redis.stop()
        during = [await s.get() for _ in range(50)]
        assert {r.status for r in during} == {200}
        assert "ratelimit-limit" not in during[0].headers      # nothing decided, nothing claimed
        assert plugin.metadata()["backend_down"] and plugin.metadata()["backend_failures"] == 50
        warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]   # rate-limited: one line, not 50
        assert "failure_policy='open' lets requests through" in warnings[0].getMessage()
        real_redis.start()
        # back on its own once Redis answers (and the bucket is gone with the restarted server)
        statuses = await _until(s, lambda r: r.status == 429, 10.0)
        assert statuses[-1] == 429
    assert not plugin.metadata()["backend_down"]
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert plugin.ratelimit_counts()[2] >= 50


async def test_redis_down_closed_answers_503_without_a_traceback(real_redis: RealRedis,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outage, "RECHECK", 0.2)
    plugin = RateLimit("100/hour", burst=99, storage=real_redis.url, key="global", failure_policy="closed")
    async with pipeline(plugin) as s:
        assert (await s.get()).status == 200
        real_redis.stop()
        down = [await s.get() for _ in range(5)]
        assert {r.status for r in down} == {503}
        assert down[0].headers["retry-after"] == "1"
        assert b"Rate limiter unavailable" in down[0].body and b"Traceback" not in down[0].body
        assert b"127.0.0.1" not in down[0].body                 # where Redis is stays in the log
        real_redis.start()
        statuses = await _until(s, lambda r: r.status == 200, 10.0)
        assert statuses[-1] == 200


async def test_a_password_in_the_url_never_reaches_the_log(caplog: Any) -> None:
    server = RealRedis("--requirepass", "hunter2")
    caplog.set_level(logging.WARNING, logger="covet_pipe.ratelimit")
    try:
        url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
        plugin = RateLimit("1/hour", storage=url, key="global")
        assert plugin.metadata()["storage"] == f"redis://:***@127.0.0.1:{server.port}/0"
        async with pipeline(plugin) as s:
            assert [(await s.get()).status for _ in range(2)] == [200, 429]
            server.stop()
            assert (await s.get()).status == 200
    finally:
        server.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "does not answer" in text and "hunter2" not in text and ":***@" in text


async def _until(s: Any, done: Any, timeout: float) -> list[int]:
    statuses: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        r = await s.get()
        statuses.append(r.status)
        if done(r):
            return statuses
        await asyncio.sleep(0.05)
    raise AssertionError(f"not recovered within {timeout} s: {statuses[-10:]}")


async def test_a_hung_redis_costs_one_timeout_per_pause_not_one_per_request(real_redis: RealRedis) -> None:
    """redis-server stopped with SIGSTOP: connections stay open and nothing answers (a hung host)."""
    import os
    import signal
    import time

    plugin = RateLimit("1000/hour", burst=999, storage=real_redis.url, key="global", timeout=0.3)
    async with pipeline(plugin) as s:
        assert (await s.get()).status == 200
        assert real_redis.proc is not None
        os.kill(real_redis.proc.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            statuses = [(await s.get()).status for _ in range(20)]
            took = time.monotonic() - start
        finally:
            os.kill(real_redis.proc.pid, signal.SIGCONT)
        assert statuses == [200] * 20                     # open: let through
        assert took < 2.0, took                           # 20 requests x 0.3 s would be 6 s
        assert plugin.metadata()["backend_failures"] == 20
        done = await _until(s, lambda r: "ratelimit-limit" in r.headers, 10.0)
        assert done[-1] == 200 and not plugin.metadata()["backend_down"]


async def test_redis_never_lets_more_than_limit_plus_burst_through_in_any_window(real_redis: RealRedis) -> None:
    """Concurrent clients for 2.5 s on 10/second, burst 5: any 1 s window holds at most 15 allowed requests.

    A request counts in a window only if it was sent and answered inside it (so it was surely decided
    there): the count is never above the true one, and the bound still fails a limiter that lets too many by.
    """
    import time

    plugin = RateLimit("10/second", burst=5, storage=real_redis.url, key="global")
    allowed: list[tuple[float, float]] = []
    async with pipeline(plugin) as s:
        stop_at = time.monotonic() + 2.5

        async def client() -> None:
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                r = await s.get()
                if r.status == 200:
                    allowed.append((sent, time.monotonic()))
                await asyncio.sleep(0.002)
        await asyncio.gather(*(client() for _ in range(10)))
    assert len(allowed) >= 6 + 10 * 2                      # the burst, then the rate, did pass
    most = max(sum(1 for sent, got in allowed if sent >= start and got < start + 1.0) for start, _ in allowed)
    assert most <= 10 + 5, most
    assert most >= 10                                      # the bound is reached, not far below
