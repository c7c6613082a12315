"""GCRA in Redis: one Lua script per decision, on Redis's clock, shared by every worker and host.

The script reads each bucket's TAT, decides on all of them (allowed only if every limit allows), moves
them all when allowed and gives each a TTL of its TAT (a bucket that holds nothing disappears). The
clock is Redis's ``TIME`` inside the script, so the hosts' clocks never enter. Times are integer
microseconds (formatted with ``%.0f``: Lua's own number-to-string keeps 14 digits only). redis-py's
``register_script`` runs it by ``EVALSHA`` and loads it again on ``NOSCRIPT`` (a restarted or
flushed server).
"""

from __future__ import annotations

from typing import Any, Sequence

from covet_pipe.ratelimit.gcra import Decision, decision
from covet_pipe.ratelimit.spec import Limit
from covet_pipe.redis_url import connect

__all__ = ["LUA", "RedisGCRA"]

#: KEYS: one bucket per limit; ARGV: interval and tolerance (µs) per limit. Returns {allowed, TAT - now...}.
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local allowed = 1
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  if tat - tonumber(ARGV[2 * i]) > now then allowed = 0 end
  tats[i] = tat
end
local out = {allowed}
for i = 1, n do
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + tonumber(ARGV[2 * i - 1])
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
  end
  out[i + 1] = tat - now
end
return out
"""


class RedisGCRA:
    """The buckets in Redis at *url* (``redis://``, ``rediss://``, ``unix://``), reached through
    :func:`covet_pipe.redis_url.connect`; each :meth:`decide` is one ``EVALSHA``."""

    def __init__(self, url: str, *, who: str, timeout: float, password_file: str | None = None,
                 password_env: str | None = None) -> None:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # One immediate retry on a new connection (a pooled one dropped by a restarted server), no
        # back-off: a limiter must answer now, and its failure policy decides while Redis is away.
        self.client: Any = connect(url, password_file=password_file, password_env=password_env,
                                   timeout=timeout, who=who, retry=Retry(NoBackoff(), 1))
        self.script: Any = self.client.register_script(LUA)

    @staticmethod
    def arguments(limits: Sequence[Limit], burst: int) -> list[int]:
        """ARGV for *limits*: interval and tolerance in whole microseconds, per limit."""
        out = []
        for limit in limits:
            interval = max(1, round(limit.interval * 1e6))
            out += [interval, interval * burst]
        return out

    async def decide(self, keys: Sequence[str], limits: Sequence[Limit], burst: int,
                     args: Sequence[int]) -> Decision:
        """One atomic step on *keys* (one per limit); *args* from :meth:`arguments`."""
        reply = await self.script(keys=keys, args=args)
        return decision(bool(reply[0]), limits, burst, [int(a) / 1e6 for a in reply[1:]])

    async def warm(self) -> None:
        """Load the script now (``SCRIPT LOAD``), so the first request does not."""
        self.script.sha = await self.client.script_load(LUA)

    async def close(self) -> None:
        await self.client.aclose()
