"""MemoryStorage: the ``memory`` storage engine, an in-process key-value store with TTLs."""

from __future__ import annotations

import heapq
import math
import time
from collections import OrderedDict

from covet_pipe import StoragePlugin
from covet_pipe.server.resp.errors import StorageFullError
from covet_pipe.storage.checks import check_key, check_ttl, check_value
from covet_pipe.storage.memory_ops import MemoryOps
from covet_pipe.storage_compound import CompoundOps

__all__ = ["MemoryStorage", "StorageFullError"]

#: at most this many expired keys are dropped per write, so one write never stalls the loop
SWEEP_BATCH = 64


class MemoryStorage(MemoryOps, StoragePlugin):
    """Bytes under string keys, in this process, with optional expiry.

    Expired keys are dropped when read and, a bounded batch at a time, on every write; no
    background task runs, so nothing outlives ``shutdown()``. Every operation runs without
    awaiting, so each is atomic on the event loop (the read-modify-write ones too: INCR, APPEND,
    GETSET, MSETNX...; they are in :mod:`covet_pipe.storage.memory_ops`). Data is lost when the process ends.

    :param max_keys: the most keys held; None for no limit.
    :param evict: when full, drop the least recently used key instead of raising
        :class:`StorageFullError`.
    """

    name = "memory"
    suspends = False            # every operation completes without awaiting
    version = "1.0.0"

    def __init__(self, max_keys: int | None = None, *, evict: bool = False) -> None:
        if max_keys is not None and (isinstance(max_keys, bool) or not isinstance(max_keys, int)
                                     or max_keys < 1):
            raise ValueError(f"MemoryStorage(max_keys=...): expected a number of keys >= 1 such as 10000, "
                             f"or None for no limit; got {max_keys!r}")
        self.max_keys = max_keys
        self.evict = evict
        #: key -> (value, deadline or None); order is least recently used first
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        #: (deadline, key) for keys set with a TTL; entries may be stale (key since
        #: overwritten or deleted): a sweep checks the deadline against _data before dropping.
        self._deadlines: list[tuple[float, str]] = []

    async def get(self, key: str) -> bytes | None:
        """The value of *key*, or None if absent or expired."""
        return self.get_now(key)

    def get_now(self, key: str) -> bytes | None:
        """:meth:`get` without a coroutine (the RESP fast path calls it, see :attr:`sync_core`)."""
        item = self._live(check_key("MemoryStorage", key))
        if item is None:
            return None
        self._data.move_to_end(key)
        return item[0]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store *value* under *key*, for *ttl* seconds or until deleted.

        :raises TypeError: if *value* is not bytes (encode text first).
        :raises ValueError: if *ttl* is not a positive number of seconds.
        :raises StorageFullError: if ``max_keys`` keys are held and ``evict`` is off.
        """
        self.set_now(key, value, ttl)

    def set_now(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """:meth:`set` without a coroutine (the RESP fast path calls it, see :attr:`sync_core`)."""
        check_key("MemoryStorage", key)
        data = check_value("MemoryStorage", key, value)
        seconds = check_ttl("MemoryStorage", "set", key, ttl)
        now = time.monotonic()
        deadline = None if seconds is None else now + seconds
        self._sweep(now)
        if key not in self._data and self.max_keys is not None and len(self._data) >= self.max_keys:
            self._make_room(key, now, self.max_keys)
        self._data[key] = (data, deadline)
        self._data.move_to_end(key)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, key))
            if len(self._deadlines) > 2 * len(self._data) + SWEEP_BATCH:
                self._rebuild_deadlines()

    async def delete(self, key: str) -> bool:
        """Remove *key*; True if it was there (and not expired)."""
        item = self._data.pop(check_key("MemoryStorage", key), None)
        return item is not None and (item[1] is None or item[1] > time.monotonic())

    async def exists(self, key: str) -> bool:
        """Whether *key* holds a value that has not expired."""
        return self._live(check_key("MemoryStorage", key)) is not None

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make *key* expire *ttl* seconds from now, or never (None); False if absent or expired.

        :raises ValueError: if *ttl* is not a positive number of seconds or None.
        """
        item = self._live(check_key("MemoryStorage", key))
        check_ttl("MemoryStorage", "expire", key, ttl)
        if item is None:
            return False
        deadline = None if ttl is None else time.monotonic() + ttl
        self._data[key] = (item[0], deadline)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, key))
            if len(self._deadlines) > 2 * len(self._data) + SWEEP_BATCH:
                self._rebuild_deadlines()
        return True

    async def ttl(self, key: str) -> float | None:
        """Seconds until *key* expires; None if absent or expired, ``math.inf`` if it never expires."""
        item = self._live(check_key("MemoryStorage", key))
        if item is None:
            return None
        if item[1] is None:
            return math.inf
        return max(0.0, item[1] - time.monotonic())

    @property
    def sync_core(self) -> bool:
        """Whether :meth:`get_now` and :meth:`set_now` are this engine's get and set (not when a subclass
        overrides those): then a caller that never awaits may call them, with no coroutine."""
        cls = type(self)
        return cls.get is MemoryStorage.get and cls.set is MemoryStorage.set

    @property
    def sync_ops(self) -> bool:
        """Whether :meth:`incr_by_now`, :meth:`get_many_now` and :meth:`set_many_now` are this engine's
        incr_by, get_many and set_many (and :attr:`sync_core` holds): then a caller that never awaits may
        call them, with no coroutine (the RESP fast path: INCR/DECR/INCRBY/DECRBY, MGET, MSET)."""
        cls = type(self)
        return (self.sync_core and cls.incr_by is MemoryOps.incr_by and cls.set_many is MemoryOps.set_many
                and cls.get_many is CompoundOps.get_many)

    def get_many_now(self, keys: list[str]) -> list[bytes | None]:
        """``get_many`` (MGET) without a coroutine: :meth:`get_now` of each key."""
        get_now = self.get_now
        return [get_now(k) for k in keys]

    def __len__(self) -> int:
        """How many keys are held, counting expired keys not yet dropped."""
        return len(self._data)

    async def clear(self) -> None:
        """Drop every key."""
        self._data.clear()
        self._deadlines.clear()

    async def shutdown(self) -> None:
        await self.clear()

    # -- expiry ----------------------------------------------------------------

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item is None:
            return None
        deadline = item[1]
        if deadline is not None and deadline <= time.monotonic():
            del self._data[key]
            return None
        return item

    def _sweep(self, now: float, limit: int = SWEEP_BATCH) -> None:
        heap = self._deadlines
        data = self._data
        for _ in range(limit):
            if not heap or heap[0][0] > now:
                return
            deadline, key = heapq.heappop(heap)
            item = data.get(key)
            if item is not None and item[1] == deadline:
                del data[key]

    def _rebuild_deadlines(self) -> None:
        # Overwrites leave stale heap entries; rebuild from the live keys before they pile up.
        self._deadlines = [(item[1], key) for key, item in self._data.items() if item[1] is not None]
        heapq.heapify(self._deadlines)

    def _make_room(self, key: str, now: float, max_keys: int) -> None:
        # Expired keys go before live ones; each is dropped once, so this stays cheap over time.
        self._sweep(now, limit=len(self._deadlines))
        if len(self._data) < max_keys:
            return
        if not self.evict:
            raise StorageFullError(
                f"MemoryStorage is full: it holds max_keys={max_keys} keys, so {key!r} was not stored; "
                "delete keys, set a ttl, raise max_keys, or pass evict=True to drop the least recently used")
        self._data.popitem(last=False)

