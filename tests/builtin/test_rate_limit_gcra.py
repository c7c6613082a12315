"""RateLimit's parts without a server: limit specs and their errors, GCRA's arithmetic on a fake clock,
the window-edge bound, several limits at once, the header fields of a decision."""

from __future__ import annotations

import random

import pytest

from covet_pipe.builtin import RateLimit, RedisRateLimit
from covet_pipe.ratelimit import Limit, MemoryGCRA, parse_limit, parse_limits
from covet_pipe.ratelimit.headers import fields, policy_field, refused_fields


@pytest.mark.parametrize("spec, count, period, text", [
    ("100/second", 100, 1.0, "100/second"),
    ("5/minute", 5, 60.0, "5/minute"),
    ("1000/hour", 1000, 3600.0, "1000/hour"),
    ("7/day", 7, 86400.0, "7/day"),
    ("10 per minute", 10, 60.0, "10/minute"),
    ("10/30 seconds", 10, 30.0, "10/30 seconds"),
    (" 3/S ", 3, 1.0, "3/second"),
    ("2/5m", 2, 300.0, "2/5 minutes"),
])
def test_specs(spec: str, count: int, period: float, text: str) -> None:
    limit = parse_limit(spec)
    assert (limit.count, limit.period, limit.text) == (count, period, text)
    assert limit.interval == pytest.approx(period / count)


@pytest.mark.parametrize("spec", ["100", "100/fortnight", "many/second", "0/second", "5/0 minutes", "", "/s",
                                  "-1/second", 100, None])
def test_a_bad_spec_names_the_plugin_and_shows_a_valid_one(spec: object) -> None:
    with pytest.raises(ValueError) as info:
        RateLimit(spec, name="api_limit")
    message = str(info.value)
    assert "'api_limit'" in message and "'100/second'" in message, message


def test_bad_options_say_what_to_write() -> None:
    cases = [
        (dict(limit=[]), "empty list"),
        (dict(), "no limit given"),
        (dict(limit="1/s", key="cookie"), "not a key kind"),
        (dict(limit="1/s", key="header:"), "not a key kind"),
        (dict(limit="1/s", burst=-1), "burst=-1"),
        (dict(limit="1/s", failure_policy="maybe"), "'open'"),
        (dict(limit="1/s", storage="mongodb://x"), "Redis URL"),
        (dict(routes={"api": "1/s"}), "starting with '/'"),
        (dict(routes={"/api/*": "1/s"}), "'/api'"),
        (dict(routes={"/api": "1/s", "/api/": "2/s"}), "same prefix"),
        (dict(routes={"/api": "1/fortnight"}), "route '/api'"),
        (dict(routes="/api"), "maps path prefixes"),
    ]
    for options, expected in cases:
        with pytest.raises(ValueError) as info:
            RateLimit(name="rl", **options)  # type: ignore[arg-type]
        assert "'rl'" in str(info.value) and expected in str(info.value), (options, str(info.value))


def test_storage_picks_the_class() -> None:
    assert type(RateLimit("1/s")) is RateLimit
    assert type(RateLimit("1/s", storage="redis://127.0.0.1:1/0")) is RedisRateLimit
    assert parse_limits(["1/s", "10/minute"]) == (Limit(1, 1.0, "1/second"), Limit(10, 60.0, "10/minute"))


def test_steady_rate_without_burst_spaces_requests_evenly() -> None:
    g = MemoryGCRA()
    limits = parse_limits("10/second")
    first = g.decide("k", limits, 0, now=100.0)
    assert first.allowed and first.remaining == 0
    again = g.decide("k", limits, 0, now=100.05)
    assert not again.allowed and again.retry_after == pytest.approx(0.05)
    assert g.decide("k", limits, 0, now=100.1).allowed
    # one request every 100 ms goes through for ever
    assert all(g.decide("k", limits, 0, now=100.1 + 0.1 * i).allowed for i in range(1, 50))


def test_burst_lets_burst_plus_one_through_at_once_then_the_steady_rate() -> None:
    g = MemoryGCRA()
    limits = parse_limits("10/second")
    got = [g.decide("k", limits, 4, now=0.0) for _ in range(8)]
    assert [d.allowed for d in got] == [True] * 5 + [False] * 3
    assert [d.remaining for d in got[:5]] == [4, 3, 2, 1, 0]
    assert got[4].reset == pytest.approx(0.5)      # five requests' worth to regain, at 100 ms each
    assert got[5].retry_after == pytest.approx(0.1)
    assert not g.decide("k", limits, 4, now=0.09).allowed
    assert g.decide("k", limits, 4, now=0.1).allowed
    # after a quiet second the whole burst is back
    assert [g.decide("k", limits, 4, now=2.0).allowed for _ in range(6)] == [True] * 5 + [False]


def test_a_refused_request_costs_nothing() -> None:
    g = MemoryGCRA()
    limits = parse_limits("1/second")
    assert g.decide("k", limits, 0, now=0.0).allowed
    for i in range(100):
        assert not g.decide("k", limits, 0, now=0.5 + i * 0.001).allowed
    assert g.decide("k", limits, 0, now=1.0).allowed


def test_keys_have_buckets_of_their_own() -> None:
    g = MemoryGCRA()
    limits = parse_limits("1/minute")
    assert g.decide("a", limits, 0, now=0.0).allowed
    assert not g.decide("a", limits, 0, now=1.0).allowed
    assert g.decide("b", limits, 0, now=1.0).allowed


@pytest.mark.parametrize("spec, burst", [("10/second", 0), ("10/second", 5), ("5/minute", 4), ("100/second", 20)])
def test_never_more_than_limit_plus_burst_in_any_window(spec: str, burst: int) -> None:
    """Clients hammering across window edges (the fixed-window trap lets 2x through there)."""
    (limit,) = parse_limits(spec)
    g = MemoryGCRA()
    rng = random.Random(17)
    now, allowed = 0.0, []
    period = limit.period
    while now < 6 * period:
        # bursts of requests right before and right after every period boundary, quiet spells between
        near_edge = (now % period) > 0.9 * period or (now % period) < 0.1 * period
        now += rng.uniform(0, limit.interval / (20 if near_edge else 2))
        if g.decide("k", (limit,), burst, now=now).allowed:
            allowed.append(now)
    assert len(allowed) > 5 * limit.count            # the limiter did let the rate through
    most = 0
    j = 0
    for i, start in enumerate(allowed):              # every window [t, t + period) that starts at a request
        while j < len(allowed) and allowed[j] < start + period:
            j += 1
        most = max(most, j - i)
    assert most <= limit.count + burst, (most, limit.count, burst)
    assert most >= limit.count                       # and it is the bound, not far below it


def test_several_limits_all_hold_and_a_refusal_moves_none() -> None:
    g = MemoryGCRA()
    limits = parse_limits(["10/second", "20/minute"])
    allowed = [g.decide("k", limits, 9, now=i * 0.1).allowed for i in range(100)]
    # the second's bucket lets one per 100 ms through; the minute's lets 10 through at once (burst 9),
    # then one per 3 s (at 3, 6 and 9 s)
    assert sum(allowed) == 10 + 3
    d = g.decide("k", limits, 9, now=10.0)
    assert not d.allowed and d.limit.text == "20/minute" and d.retry_after == pytest.approx(2.0)


def test_memory_stays_bounded_and_says_so() -> None:
    evicted: list[int] = []
    g = MemoryGCRA(max_keys=100, on_evict=evicted.append)
    limits = parse_limits("1/hour")
    for i in range(250):
        g.decide(f"client-{i}", limits, 0, now=float(i))
    assert len(g) <= 100 and sum(evicted) >= 150


def test_header_fields() -> None:
    limits = parse_limits(["10/second", "1000/hour"])
    g = MemoryGCRA()
    d = g.decide("k", limits, 2, now=0.0)
    policy = policy_field(limits)
    assert policy == '"10/second";q=10;w=1, "1000/hour";q=1000;w=3600'
    got = dict(fields(d, policy))
    assert got == {"ratelimit-limit": "10", "ratelimit-remaining": "2", "ratelimit-reset": "1",
                   "ratelimit-policy": policy,
                   "ratelimit": '"10/second";r=2;t=1, "1000/hour";r=2;t=4'}
    g.decide("k", limits, 2, now=0.0)
    g.decide("k", limits, 2, now=0.0)
    refused = g.decide("k", limits, 2, now=0.0)
    got = dict(refused_fields(refused, policy))
    # both refuse; the hour's wait (3.6 s) is the longer, so the headers speak of it
    assert not refused.allowed and refused.limit.text == "1000/hour"
    assert got["retry-after"] == "4" and got["ratelimit-remaining"] == "0" and got["ratelimit-limit"] == "1000"
