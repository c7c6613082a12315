"""The StoragePlugin contract's compound operations, and the op a transaction hands an engine.

Each compound operation is what one Redis command does (``SET`` with its flags, ``GETEX``, ``PEXPIRE``
with ``NX``/``XX``/``GT``/``LT``, ``DEL`` of many keys, ``SCAN``...), so an engine can do it in one atomic
step: RedisStorage sends that one command. The defaults here build each from the basic calls (``get``,
``set``, ``exists``, ``ttl``, ``expire``, ``delete``, ``keys``): atomic on the event loop for an engine
whose calls never suspend (MemoryStorage), a read then a write for one that does. An engine that talks
to a server overrides them.

Expiry arguments mirror Redis's: ``px`` is milliseconds from now, ``pxat`` a unix time in
milliseconds (in the past: the key is written, then gone at once, as Redis does).
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

__all__ = ["CompoundOps", "StorageOp"]


class StorageOp(NamedTuple):
    """One call of a storage engine's method, queued for :meth:`StoragePlugin.atomic`."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}


def _left_ms(px: int | None, pxat: int | None) -> int | None:
    """Milliseconds from now that *px* / *pxat* mean (<= 0: already past); None for neither."""
    if pxat is not None:
        return pxat - int(time.time() * 1000)
    return px


class CompoundOps:
    """Defaults of the compound operations, from the basic calls of :class:`StoragePlugin`."""

    # the basic calls (StoragePlugin's)
    get: Any
    set: Any
    delete: Any
    exists: Any
    ttl: Any
    expire: Any
    keys: Any
    get_set: Any

    async def set_with(self, key: str, value: bytes, *, px: int | None = None, pxat: int | None = None,
                       keep_ttl: bool = False, only_new: bool = False, only_existing: bool = False,
                       get: bool = False) -> tuple[bool, bytes | None]:
        """``SET key value [NX|XX] [GET] [PX px|PXAT pxat|KEEPTTL]``.

        :returns: (whether it was written, the old value if *get* else None).
        """
        if get and not (only_new or only_existing or keep_ttl) and px is None and pxat is None:
            try:                            # SET k v GET is GETSET: one call
                return True, await self.get_set(key, value)
            except NotImplementedError:
                pass
        old = None
        if get:
            old = await self.get(key)
            present = old is not None
        elif only_new or only_existing:
            present = await self.exists(key)
        else:
            present = False
        if (only_new and present) or (only_existing and not present):
            return False, old
        ms = _left_ms(px, pxat)
        ttl = None if ms is None else ms / 1000
        if keep_ttl:
            left = await self.ttl(key)
            ttl = left if left is not None and left != math.inf and left > 0 else None
        if ttl is not None and ttl <= 0:
            await self.delete(key)
        else:
            await self.set(key, value, ttl)
        return True, old

    async def get_ex(self, key: str, *, px: int | None = None, pxat: int | None = None,
                     persist: bool = False) -> bytes | None:
        """``GETEX key [PX px|PXAT pxat|PERSIST]``: the value, its expiry changed."""
        value: bytes | None = await self.get(key)
        ms = _left_ms(px, pxat)
        if value is None or (ms is None and not persist):
            return value
        if persist:
            await self.expire(key, None)
        elif ms is not None and ms <= 0:
            await self.delete(key)
        elif ms is not None:
            await self.expire(key, ms / 1000)
        return value

    async def expire_with(self, key: str, *, px: int | None = None, pxat: int | None = None,
                          flags: frozenset[str] = frozenset()) -> bool:
        """``PEXPIRE key px`` or ``PEXPIREAT key pxat``, with the flags ``NX``/``XX``/``GT``/``LT``.

        True if the expiry was set (or the key removed, for a time in the past).
        """
        ms = _left_ms(px, pxat)
        if ms is None:
            raise ValueError("expire_with(key, px=... or pxat=...): give one of them")
        if flags:
            left = await self.ttl(key)
            if left is None:
                return False
            current = None if left == math.inf else left * 1000
            if ("NX" in flags and current is not None) or ("XX" in flags and current is None) \
                    or ("GT" in flags and (current is None or ms <= current)) \
                    or ("LT" in flags and current is not None and ms >= current):
                return False
        if ms <= 0:                         # Redis removes the key at once
            return bool(await self.delete(key))
        return bool(await self.expire(key, ms / 1000))

    async def persist(self, key: str) -> bool:
        """``PERSIST key``: True if it had an expiry, now removed."""
        left = await self.ttl(key)
        if left is None or left == math.inf:
            return False
        return bool(await self.expire(key, None))

    async def expire_time(self, key: str) -> float | None:
        """``PEXPIRETIME key``: the unix time in ms *key* expires at; None if absent, ``math.inf`` if never.

        This default reckons it from :meth:`ttl` (within a millisecond of the time set).
        """
        left: float | None = await self.ttl(key)
        if left is None or left == math.inf:
            return left
        return round(time.time() * 1000 + left * 1000)

    async def key_type(self, key: str) -> str:
        """``TYPE key``: ``"string"``, or ``"none"`` if absent (an engine holding other types names them)."""
        return "string" if await self.exists(key) else "none"

    async def delete_many(self, keys: list[str]) -> int:
        """``DEL key...``: how many there were."""
        return sum([1 for k in keys if await self.delete(k)])

    async def exists_many(self, keys: list[str]) -> int:
        """``EXISTS key...``: how many there are (a key named twice counts twice)."""
        return sum([1 for k in keys if await self.exists(k)])

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """``MGET key...``."""
        return [await self.get(k) for k in keys]

    async def scan(self, cursor: int, pattern: str = "*", count: int = 10,
                   kind: str | None = None) -> tuple[int, list[str]]:
        """``SCAN cursor [MATCH pattern] [COUNT count] [TYPE kind]``: the next cursor and a page of keys.

        This default answers every key in one page (cursor 0 next); COUNT is a hint, as in Redis.
        """
        if cursor != 0 or kind not in (None, "string"):
            return 0, []
        return 0, list(await self.keys(pattern))

    async def key_count(self) -> tuple[int, int]:
        """(how many keys, how many of them expire): DBSIZE and INFO keyspace's ``keys=``/``expires=``.

        This default counts no expiring keys (the basic calls cannot tell them without a call per key).
        """
        return len(await self.keys("*")), 0
