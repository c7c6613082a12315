"""RedisStorage's read-modify-write operations: each is one Redis command, atomic in Redis itself."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from covet_pipe.storage.checks import check_value
from covet_pipe.storage.errors import NotANumberError

__all__ = ["RedisOps"]

_INCRBYFLOAT = "return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])"
_NUMBER_REPLIES = {
    "value is not an integer or out of range": "integer",
    "increment or decrement would overflow": "integer",
    "value is not a valid float": "float",
    "increment would produce NaN or Infinity": "float",
}


class RedisOps:
    """Mixed into RedisStorage: its client, ``timeout``, ``_slots``, ``_key`` and ``_failed``."""

    key_prefix: str
    timeout: float | None
    _client: Any
    _slots: Any
    _connected: bool | None

    # RedisStorage's own methods
    _key: Callable[[str], bytes]
    _not_started: Callable[[], Any]
    _reached: Callable[[], None]
    _failed: Callable[[str, BaseException], Exception]

    async def _call(self, call: str, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    result = await fn(client)
        except Exception as exc:
            raise self._error(call, exc) from exc
        if self._connected is not True:
            self._reached()
        return result

    def _error(self, call: str, exc: BaseException) -> Exception:
        """What *call* raises for *exc*: NotANumberError for redis's number errors, else ``_failed``'s."""
        from redis import exceptions as rx
        if isinstance(exc, rx.ResponseError):
            text = str(exc).removeprefix("ERR ")
            for known, kind in _NUMBER_REPLIES.items():    # a script's error has more after it
                if text.startswith(known):
                    error = NotANumberError(known, kind)
                    error.__cause__ = exc
                    return error
        return self._failed(call, exc)

    async def incr_by(self, key: str, delta: int) -> int:
        """INCRBY: add *delta* to the integer at *key*."""
        k = self._key(key)
        return int(await self._call("incr_by", lambda c: c.incrby(k, delta)))

    async def incr_by_float(self, key: str, delta: bytes) -> bytes:
        """INCRBYFLOAT: add *delta* (a number's text) to the number at *key*; the new value's text."""
        k = self._key(key)
        # through a script: redis-py turns INCRBYFLOAT's reply into a float, losing redis's own text
        reply = await self._call("incr_by_float", lambda c: c.eval(_INCRBYFLOAT, 1, k, delta))
        return bytes(reply)

    async def append(self, key: str, value: bytes) -> int:
        """APPEND: the new length."""
        k = self._key(key)
        data = check_value("RedisStorage", key, value)
        return int(await self._call("append", lambda c: c.append(k, data)))

    async def get_set(self, key: str, value: bytes) -> bytes | None:
        """SET key value GET: the old value."""
        k = self._key(key)
        data = check_value("RedisStorage", key, value)
        result: bytes | None = await self._call("get_set", lambda c: c.set(k, data, get=True))
        return result

    async def get_del(self, key: str) -> bytes | None:
        """GETDEL: the value, the key removed."""
        k = self._key(key)
        result: bytes | None = await self._call("get_del", lambda c: c.getdel(k))
        return result

    async def set_many(self, items: list[tuple[str, bytes]], only_new: bool = False) -> bool:
        """MSET, or MSETNX with *only_new*."""
        mapping = {self._key(k): check_value("RedisStorage", k, v) for k, v in items}
        if only_new:
            return bool(await self._call("set_many", lambda c: c.msetnx(mapping)))
        await self._call("set_many", lambda c: c.mset(mapping))
        return True

    async def keys(self, pattern: str = "*") -> list[str]:
        """SCAN over this engine's keys (``key_prefix`` + *pattern*), the prefix taken off."""
        prefix = self.key_prefix
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)
        match = (escaped + pattern).encode("utf-8", "surrogatepass")

        async def scan(c: Any) -> list[bytes]:
            return [k async for k in c.scan_iter(match=match, count=1000)]

        found = await self._call("keys", scan)
        return [k.decode("utf-8", "surrogatepass")[len(prefix):] for k in found]

    async def flush(self) -> None:
        """FLUSHDB when there is no ``key_prefix``; else delete this engine's keys only."""
        if not self.key_prefix:
            await self._call("flush", lambda c: c.flushdb())
            return
        for key in await self.keys("*"):
            k = self._key(key)
            await self._call("flush", lambda c: c.delete(k))
