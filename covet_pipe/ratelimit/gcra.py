"""GCRA (the generic cell rate algorithm), the decision it makes, and its in-memory store.

One number per bucket: the theoretical arrival time (TAT) of the next request at the steady rate.
With ``T`` the interval between requests (``period / count``) and ``tau = burst * T`` the tolerance,
a request at ``now`` is allowed when ``TAT - tau <= now``, and then ``TAT = max(TAT, now) + T``. So
``burst + 1`` requests may arrive at once, then one every ``T``; in any window of one period no more
than ``count + burst`` get through (no fixed window, so no edge lets twice the limit through). A
request refused costs nothing. Several limits on one request are decided together: allowed only when
every one allows it, and then every bucket moves.

The Redis store (:mod:`covet_pipe.ratelimit.redis_gcra`) runs the same step in one Lua script; both
hand :func:`decision` the TATs after the step, and the headers come from that.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

from covet_pipe.ratelimit.spec import Limit

__all__ = ["Decision", "MemoryGCRA", "decision"]

#: float slack (seconds) in comparisons: a sum of intervals that is due exactly now must count as due
_EPS = 1e-9


class Decision:
    """One request's outcome: allowed or not, and what the headers say about the binding limit.

    Made with each limit's ``TAT - now`` after the step; the figures are worked out when first read
    (a response without RateLimit fields never pays for them).
    """

    __slots__ = ("allowed", "limits", "burst", "ahead", "_rows", "_best", "_wait")

    def __init__(self, allowed: bool, limits: Sequence[Limit], burst: int, ahead: Sequence[float]) -> None:
        self.allowed = allowed
        self.limits = limits
        self.burst = burst
        #: per limit, seconds from now to the bucket's TAT after this request (>= 0)
        self.ahead = ahead
        self._rows: tuple[tuple[Limit, int, float], ...] | None = None
        self._best = 0
        self._wait = 0.0

    def _work_out(self) -> tuple[tuple[Limit, int, float], ...]:
        if len(self.limits) == 1:
            limit, a = self.limits[0], self.ahead[0]
            tau = self.burst * limit.interval
            remaining = math.floor((tau - a) / limit.interval + _EPS) + 1
            self._rows = ((limit, remaining if remaining > 0 else 0, a),)
            self._wait = 0.0 if self.allowed else a - tau
            return self._rows
        rows = []
        best, wait, allowed, burst = 0, 0.0, self.allowed, self.burst
        for i, (limit, a) in enumerate(zip(self.limits, self.ahead)):
            interval = limit.interval
            tau = burst * interval
            remaining = max(0, math.floor((tau - a) / interval + _EPS) + 1)
            rows.append((limit, remaining, a))
            if not allowed and a - tau > wait:
                wait, best = a - tau, i
            elif allowed and remaining < rows[best][1]:
                best = i
        self._rows, self._best, self._wait = tuple(rows), best, wait
        return self._rows

    @property
    def all(self) -> tuple[tuple[Limit, int, float], ...]:
        """(limit, remaining, reset) of every limit, for RateLimit-Policy / RateLimit."""
        return self._rows if self._rows is not None else self._work_out()

    @property
    def limit(self) -> Limit:
        """The limit the headers describe: the one with least remaining (allowed) or the longest wait."""
        return self.all[self._best][0]

    @property
    def remaining(self) -> int:
        """Requests that may be sent now without waiting (under the binding limit)."""
        return self.all[self._best][1]

    @property
    def reset(self) -> float:
        """Seconds until the binding limit's bucket is whole again."""
        return self.all[self._best][2]

    @property
    def retry_after(self) -> float:
        """Seconds until a request would be allowed (0 when allowed)."""
        self.all
        return self._wait

    def __repr__(self) -> str:
        return (f"Decision(allowed={self.allowed}, limit={self.limit.text!r}, remaining={self.remaining}, "
                f"reset={self.reset:.3f}, retry_after={self.retry_after:.3f})")


def decision(allowed: bool, limits: Sequence[Limit], burst: int, ahead: Sequence[float]) -> Decision:
    """The Decision from each limit's ``TAT - now`` (seconds, after the step; >= 0)."""
    return Decision(allowed, limits, burst, ahead)


class MemoryGCRA:
    """TATs in a dict, on this process's monotonic clock; never awaits.

    At most *max_keys* buckets: past it, buckets whose TAT has passed (they hold nothing) are dropped,
    then the oldest ones, and *on_evict* is told how many of those it took (their clients start afresh).
    """

    def __init__(self, max_keys: int = 100_000, *, clock: Callable[[], float] = time.monotonic,
                 on_evict: Callable[[int], None] | None = None) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self.on_evict = on_evict
        self._tats: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self._tats)

    def decide(self, key: str, limits: Sequence[Limit], burst: int, now: float | None = None) -> Decision:
        """Decide one request on the buckets of *key* (one TAT per limit)."""
        if now is None:
            now = self.clock()
        tats = self._tats.get(key)
        if tats is None:
            tats = [now] * len(limits)
            if len(self._tats) >= self.max_keys:
                self._prune(now)
            self._tats[key] = tats
        if len(limits) == 1:                 # the usual case, without the loops
            interval = limits[0].interval
            tat = tats[0]
            if tat < now:
                tat = now
            if tat - burst * interval > now + _EPS:
                tats[0] = tat
                return Decision(False, limits, burst, (tat - now,))
            tats[0] = tat = tat + interval
            return Decision(True, limits, burst, (tat - now,))
        allowed = True
        for i, limit in enumerate(limits):
            tat = tats[i]
            if tat < now:
                tats[i] = tat = now
            if tat - burst * limit.interval > now + _EPS:
                allowed = False
        if allowed:
            for i, limit in enumerate(limits):
                tats[i] += limit.interval
        return Decision(allowed, limits, burst, [t - now for t in tats])

    def export(self, now: float | None = None) -> dict[str, list[float]]:
        """The buckets that hold something: key -> each TAT less *now* (seconds, JSON-safe)."""
        now = self.clock() if now is None else now
        return {k: [max(0.0, t - now) for t in tats] for k, tats in self._tats.items() if max(tats) > now}

    def restore(self, buckets: dict[str, list[float]], now: float | None = None) -> None:
        """Take buckets :meth:`export` gave (on this clock or another: the TATs are relative)."""
        now = self.clock() if now is None else now
        for k, ahead in buckets.items():
            if len(self._tats) >= self.max_keys:
                break
            self._tats[k] = [now + float(a) for a in ahead]

    def _prune(self, now: float) -> None:
        stale = [k for k, tats in self._tats.items() if max(tats) <= now]
        for k in stale:
            del self._tats[k]
        over = len(self._tats) - self.max_keys + 1
        if over > 0:
            for k in list(self._tats)[:over]:
                del self._tats[k]
            if self.on_evict is not None:
                self.on_evict(over)
