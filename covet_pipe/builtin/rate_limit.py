"""RateLimit, by its built-in name: ``covet_pipe.builtin.RateLimit``.

The plugin and its parts (limit specs, GCRA in memory and in Redis, keys, headers) are the package
:mod:`covet_pipe.ratelimit`; docs/rate-limit.md shows how to use it.
"""

from covet_pipe.ratelimit.middleware import RateLimit, RedisRateLimit

__all__ = ["RateLimit", "RedisRateLimit"]
