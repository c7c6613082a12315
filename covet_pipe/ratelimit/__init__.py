"""Rate limiting for covet-pipe: limit specs, GCRA in memory and in Redis, keys, the RateLimit header fields.

The plugin is :class:`covet_pipe.builtin.RateLimit` (defined in :mod:`covet_pipe.ratelimit.middleware`);
docs/rate-limit.md shows how to use it.
"""

from covet_pipe.ratelimit.gcra import Decision, MemoryGCRA, decision
from covet_pipe.ratelimit.middleware import WORKERS_ENV, RateLimit, RedisRateLimit
from covet_pipe.ratelimit.redis_gcra import RedisGCRA
from covet_pipe.ratelimit.spec import Limit, parse_limit, parse_limits

__all__ = ["Decision", "Limit", "MemoryGCRA", "RateLimit", "RedisGCRA", "RedisRateLimit", "WORKERS_ENV",
           "decision", "parse_limit", "parse_limits"]
