"""Each StoragePlugin call as the Redis command that does it, for RedisStorage's pipelines.

``PLANS[method](engine, pipe, *args, **kwargs)`` checks the arguments (raising as the engine's call
would), queues the command(s) on a redis-py pipeline, and returns how to read their replies into the
call's result. ``redis_batch.py`` sends them: many in one MULTI/EXEC, or one on its own.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from covet_pipe.storage.checks import check_value

__all__ = ["Convert", "PLANS", "escape_glob"]

_INCRBYFLOAT = "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])"
#: FLUSHDB under a key_prefix: this engine's keys only, in one atomic step
_DEL_MATCHING = ("local ks = redis.call('KEYS', ARGV[1]) for i = 1, #ks, 1000 do "
                 "redis.call('DEL', unpack(ks, i, math.min(i + 999, #ks))) end return #ks")
#: DBSIZE / INFO keyspace under a key_prefix: {keys, keys with an expiry}
_COUNT_MATCHING = ("local n, e = 0, 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do n = n + 1 "
                   "if redis.call('PTTL', k) >= 0 then e = e + 1 end end return {n, e}")

Convert = Callable[[list[Any]], Any]


def escape_glob(text: str) -> str:
    """*text* as a Redis glob that matches only itself."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# -- each engine call as Redis commands: queue them on the pipeline, return how to read their replies --

def _names(engine: Any, found: list[bytes]) -> list[str]:
    cut = len(engine.key_prefix)
    return [k.decode("utf-8", "surrogatepass")[cut:] for k in found]


def _match(engine: Any, pattern: str) -> bytes:
    return (escape_glob(engine.key_prefix) + pattern).encode("utf-8", "surrogatepass")


def _ttl_of(ms: int) -> float | None:
    if ms == -2:
        return None
    return math.inf if ms == -1 else max(0.0, ms / 1000)


def _time_of(ms: int) -> float | None:
    if ms == -2:
        return None
    return math.inf if ms == -1 else ms


def _set(e: Any, p: Any, key: str, value: bytes, ttl: float | None = None) -> Convert:
    k, data, ms = e._key(key), check_value("RedisStorage", key, value), e._ms("set", key, ttl)
    p.set(k, data, px=ms)
    return lambda r: None


def _expire(e: Any, p: Any, key: str, ttl: float | None) -> Convert:
    k, ms = e._key(key), e._ms("expire", key, ttl)
    if ms is not None:
        p.pexpire(k, ms)
    else:                               # PERSIST answers 0 for "no key" and "no expiry" alike
        p.exists(k)
        p.persist(k)
    return lambda r: bool(r[0])


def _set_many(e: Any, p: Any, items: list[tuple[str, bytes]], only_new: bool = False) -> Convert:
    mapping = {e._key(k): check_value("RedisStorage", k, v) for k, v in items}
    if only_new:
        p.msetnx(mapping)
        return lambda r: bool(r[0])
    p.mset(mapping)
    return lambda r: True


def _flush(e: Any, p: Any) -> Convert:
    if e.key_prefix:
        p.eval(_DEL_MATCHING, 0, _match(e, "*"))
    else:
        p.flushdb()
    return lambda r: None


def _set_with(e: Any, p: Any, key: str, value: bytes, *, px: int | None = None, pxat: int | None = None,
              keep_ttl: bool = False, only_new: bool = False, only_existing: bool = False,
              get: bool = False) -> Convert:
    p.set(e._key(key), check_value("RedisStorage", key, value), px=px, pxat=pxat, keepttl=keep_ttl,
          nx=only_new, xx=only_existing, get=get)
    if not get:
        return lambda r: (bool(r[0]), None)

    def with_old(r: list[Any]) -> tuple[bool, bytes | None]:
        old = r[0]
        return (old is None if only_new else old is not None if only_existing else True), old
    return with_old


def _expire_with(e: Any, p: Any, key: str, *, px: int | None = None, pxat: int | None = None,
                 flags: frozenset[str] = frozenset()) -> Convert:
    options = {f.lower(): True for f in flags if f in ("NX", "XX", "GT", "LT")}
    if pxat is not None:
        p.pexpireat(e._key(key), pxat, **options)
    elif px is not None:
        p.pexpire(e._key(key), px, **options)
    else:
        raise ValueError("RedisStorage.expire_with(key, px=... or pxat=...): give one of them")
    return lambda r: bool(r[0])


def _scan(e: Any, p: Any, cursor: int, pattern: str = "*", count: int = 10, kind: str | None = None) -> Convert:
    p.scan(cursor, match=_match(e, pattern), count=count, _type=kind)
    return lambda r: (int(r[0][0]), _names(e, r[0][1]))


def _key_count(e: Any, p: Any) -> Convert:
    if e.key_prefix:
        p.eval(_COUNT_MATCHING, 0, _match(e, "*"))
        return lambda r: (int(r[0][0]), int(r[0][1]))
    db = "db%d" % int(e._client.connection_pool.connection_kwargs.get("db") or 0)
    p.info("keyspace")

    def counts(r: list[Any]) -> tuple[int, int]:
        line = r[0].get(db) or {}
        return int(line.get("keys", 0)), int(line.get("expires", 0))
    return counts


def _then(queued: Any, convert: Convert) -> Convert:
    """After queuing a command (*queued*: the pipeline, unused), read its reply with *convert*."""
    return convert


def _first(r: list[Any]) -> Any:
    return r[0]


def _flag(r: list[Any]) -> bool:
    return bool(r[0])


def _count(r: list[Any]) -> int:
    return int(r[0])


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _value(e: Any, key: str, value: bytes) -> bytes:
    return check_value("RedisStorage", key, value)


PLANS: dict[str, Callable[..., Convert]] = {
    "get": lambda e, p, key: _then(p.get(e._key(key)), _first),
    "set": _set,
    "delete": lambda e, p, key: _then(p.delete(e._key(key)), _flag),
    "exists": lambda e, p, key: _then(p.exists(e._key(key)), _flag),
    "expire": _expire,
    "ttl": lambda e, p, key: _then(p.pttl(e._key(key)), lambda r: _ttl_of(int(r[0]))),
    "incr_by": lambda e, p, key, delta: _then(p.incrby(e._key(key), delta), _count),
    # a script: redis-py turns INCRBYFLOAT's reply into a float, losing redis's own text
    "incr_by_float": lambda e, p, key, delta: _then(p.eval(_INCRBYFLOAT, 1, e._key(key), delta),
                                                    lambda r: bytes(r[0])),
    "append": lambda e, p, key, value: _then(p.append(e._key(key), _value(e, key, value)), _count),
    "get_set": lambda e, p, key, value: _then(p.set(e._key(key), _value(e, key, value), get=True), _first),
    "get_del": lambda e, p, key: _then(p.getdel(e._key(key)), _first),
    "set_many": _set_many,
    "keys": lambda e, p, pattern="*": _then(p.keys(_match(e, pattern)), lambda r: _names(e, r[0])),
    "flush": _flush,
    "set_with": _set_with,
    "get_ex": lambda e, p, key, px=None, pxat=None, persist=False: _then(
        p.getex(e._key(key), px=px, pxat=pxat, persist=persist), _first),
    "expire_with": _expire_with,
    "persist": lambda e, p, key: _then(p.persist(e._key(key)), _flag),
    "expire_time": lambda e, p, key: _then(p.pexpiretime(e._key(key)), lambda r: _time_of(int(r[0]))),
    "key_type": lambda e, p, key: _then(p.type(e._key(key)), lambda r: _text(r[0])),
    "delete_many": lambda e, p, keys: _then(p.delete(*[e._key(k) for k in keys]), _count),
    "exists_many": lambda e, p, keys: _then(p.exists(*[e._key(k) for k in keys]), _count),
    "get_many": lambda e, p, keys: _then(p.mget([e._key(k) for k in keys]), lambda r: list(r[0])),
    "scan": _scan,
    "key_count": _key_count,
}
