"""RedisStorage's transactions and compound operations: each engine call as the one Redis command that does it.

``atomic(ops)`` queues every op's command on one connection between ``MULTI`` and ``EXEC`` (a redis-py
transaction pipeline), so Redis runs them with no other client's command in between, and each op's
reply, or its error (``WRONGTYPE``, not an integer...), is that op's result: the others still run.

``watch(keys)`` is Redis's own ``WATCH``, sent on a connection taken from the pool and pinned for that
RESP client's transaction; ``atomic(ops, watch)`` sends ``MULTI``...``EXEC`` on that connection, so a
write by any client of that Redis (through covet-pipe or not, on any host) makes ``EXEC`` run nothing.
The pinned connection holds one of the engine's ``max_connections`` until EXEC, UNWATCH, DISCARD or
the client's disconnection gives it back.

The compound operations (``set_with``, ``get_ex``, ``expire_with``...) outside a transaction send the
same one command: ``SET`` with its flags, ``GETEX``, ``PEXPIRE`` with ``NX``/``XX``/``GT``/``LT``, ``DEL``
of many keys, ``SCAN`` with ``MATCH``/``COUNT``/``TYPE`` (the cursor is Redis's own, the pattern put
under ``key_prefix``), never a read then a write from Python. Which command each call is: ``redis_plans.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from covet_pipe.storage.redis_plans import PLANS, Convert
from covet_pipe.storage_compound import StorageOp

__all__ = ["RedisBatch", "RedisWatch"]


class RedisWatch:
    """A Redis WATCH on a pinned connection (a redis-py pipeline in watching mode) and the pool slot it holds."""

    __slots__ = ("pipe", "_slots", "_done")

    def __init__(self, pipe: Any, slots: asyncio.Semaphore) -> None:
        self.pipe = pipe
        self._slots = slots
        self._done = False

    async def close(self) -> None:
        """UNWATCH, and the connection back to the pool (again: nothing)."""
        if self._done:
            return
        self._done = True
        try:
            await self.pipe.reset()
        finally:
            self._slots.release()


class RedisBatch:
    """Mixed into RedisStorage: its client, ``timeout``, ``_slots``, ``key_prefix``, ``_key``, ``_ms``..."""

    key_prefix: str
    timeout: float | None
    _client: Any
    _slots: Any
    _connected: bool | None
    _key: Callable[[str], bytes]
    _ms: Callable[[str, str, Any], int | None]
    _not_started: Callable[[], Any]
    _reached: Callable[[], None]
    _failed: Callable[[str, BaseException], Exception]
    _error: Callable[[str, BaseException], Exception]

    # -- transactions --------------------------------------------------------------------------

    async def atomic(self, ops: list[StorageOp], watch: object | None = None) -> list[object] | None:
        """Every op in one Redis MULTI/EXEC; None, running nothing, if a key of *watch* was written since."""
        from redis.exceptions import WatchError

        client = self._client or self._not_started()
        if watch is not None and not isinstance(watch, RedisWatch):
            raise TypeError(f"RedisStorage.atomic(ops, watch=...): expected what RedisStorage.watch() returned, "
                            f"got {type(watch).__name__}")
        results: list[object] = [None] * len(ops)
        try:
            async with asyncio.timeout(self.timeout):
                if watch is None:
                    async with self._slots:
                        async with client.pipeline(transaction=True) as pipe:
                            spans = self._queue(pipe, ops, results)
                            replies = await pipe.execute(raise_on_error=False)
                else:
                    pipe = watch.pipe
                    pipe.multi()
                    spans = self._queue(pipe, ops, results)
                    replies = await pipe.execute(raise_on_error=False)
        except WatchError as exc:
            if "changed" in str(exc):       # EXEC's null: a watched key was written
                return None
            raise self._failed("atomic", exc) from exc     # the pinned connection broke
        except Exception as exc:
            raise self._failed("atomic", exc) from exc
        finally:
            if watch is not None:
                await watch.close()
        if self._connected is not True:
            self._reached()
        for i, method, start, end, convert in spans:
            results[i] = self._converted(method, replies[start:end], convert)
        return results

    async def watch(self, keys: list[str], held: object | None = None) -> object:
        """Redis's WATCH of *keys* on a connection pinned for this transaction (*held*'s, if given)."""
        client = self._client or self._not_started()
        handle = held if isinstance(held, RedisWatch) else None
        fresh = handle is None
        names = [self._key(k) for k in keys]
        try:
            async with asyncio.timeout(self.timeout):
                if handle is None:
                    await self._slots.acquire()
                    handle = RedisWatch(client.pipeline(transaction=True), self._slots)
                await handle.pipe.watch(*names)
        except Exception as exc:
            if fresh and handle is not None:
                await handle.close()
            raise self._failed("watch", exc) from exc
        if self._connected is not True:
            self._reached()
        return handle

    async def unwatch(self, held: object) -> None:
        """UNWATCH, and the pinned connection back to the pool."""
        if isinstance(held, RedisWatch):
            await held.close()

    def _queue(self, pipe: Any, ops: list[StorageOp], results: list[object]) -> list[tuple[Any, ...]]:
        """Queue each op's commands on *pipe*; (op index, method, first reply, end, convert) for each queued."""
        spans = []
        for i, op in enumerate(ops):
            plan = PLANS.get(op.method)
            start = len(pipe.command_stack)
            if plan is None:
                results[i] = NotImplementedError(f"RedisStorage cannot run {op.method}() in a transaction")
                continue
            try:
                convert = plan(self, pipe, *op.args, **op.kwargs)
            except Exception as exc:        # a bad argument: that op's error, nothing queued
                del pipe.command_stack[start:]
                results[i] = exc
                continue
            spans.append((i, op.method, start, len(pipe.command_stack), convert))
        return spans

    def _converted(self, method: str, replies: list[Any], convert: Convert) -> object:
        for reply in replies:
            if isinstance(reply, Exception):
                return self._error(method, reply)
        return convert(replies)

    async def _single(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """One op, outside a transaction: its one command."""
        client = self._client or self._not_started()
        pipe = client.pipeline(transaction=False)
        convert = PLANS[method](self, pipe, *args, **kwargs)       # bad arguments raise here
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    async with pipe:
                        replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            raise self._error(method, exc) from exc
        if self._connected is not True:
            self._reached()
        result = self._converted(method, replies, convert)
        if isinstance(result, Exception):
            raise result
        return result

    # -- the compound operations, one command each -----------------------------------------------

    async def set_with(self, key: str, value: bytes, *, px: int | None = None, pxat: int | None = None,
                       keep_ttl: bool = False, only_new: bool = False, only_existing: bool = False,
                       get: bool = False) -> tuple[bool, bytes | None]:
        """``SET key value`` with the same flags."""
        result: tuple[bool, bytes | None] = await self._single(
            "set_with", key, value, px=px, pxat=pxat, keep_ttl=keep_ttl, only_new=only_new,
            only_existing=only_existing, get=get)
        return result

    async def get_ex(self, key: str, *, px: int | None = None, pxat: int | None = None,
                     persist: bool = False) -> bytes | None:
        """``GETEX key [PX|PXAT|PERSIST]``."""
        result: bytes | None = await self._single("get_ex", key, px=px, pxat=pxat, persist=persist)
        return result

    async def expire_with(self, key: str, *, px: int | None = None, pxat: int | None = None,
                          flags: frozenset[str] = frozenset()) -> bool:
        """``PEXPIRE`` / ``PEXPIREAT`` with the flags."""
        return bool(await self._single("expire_with", key, px=px, pxat=pxat, flags=flags))

    async def persist(self, key: str) -> bool:
        """``PERSIST key``."""
        return bool(await self._single("persist", key))

    async def expire_time(self, key: str) -> float | None:
        """``PEXPIRETIME key``: Redis's own, to the millisecond."""
        result: float | None = await self._single("expire_time", key)
        return result

    async def key_type(self, key: str) -> str:
        """``TYPE key`` (a list or hash another client wrote under the prefix is named as Redis names it)."""
        return str(await self._single("key_type", key))

    async def delete_many(self, keys: list[str]) -> int:
        """``DEL key...``."""
        return int(await self._single("delete_many", keys))

    async def exists_many(self, keys: list[str]) -> int:
        """``EXISTS key...``."""
        return int(await self._single("exists_many", keys))

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """``MGET key...``."""
        result: list[bytes | None] = await self._single("get_many", keys)
        return result

    async def scan(self, cursor: int, pattern: str = "*", count: int = 10,
                   kind: str | None = None) -> tuple[int, list[str]]:
        """Redis's ``SCAN cursor MATCH <key_prefix><pattern> COUNT count [TYPE kind]``, the prefix taken off."""
        result: tuple[int, list[str]] = await self._single("scan", cursor, pattern, count, kind)
        return result

    async def key_count(self) -> tuple[int, int]:
        """(keys, keys with an expiry): INFO keyspace's, or under a key_prefix, a script counting them."""
        result: tuple[int, int] = await self._single("key_count")
        return result
