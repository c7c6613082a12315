"""Counts of the calls made to storage engines through the manager (``covet_pipe_storage_calls_total``).

A StoragePlugin is called by other plugins (and by RESP's commands), not by the chain, so the core
keeps no counter for it. ``manager.get_storage_engine()`` and ``ctx.get_service(name)`` hand out a
:class:`CountedStorage` in its place: the same engine seen through a thin view that counts each call of
a StoragePlugin method (get, set, delete, exists, expire, ttl) and the calls that raised, in plain
integers, per engine name and operation. Nothing else pays: a request that uses no storage never
meets it. The counts carry on across a reload (a reloaded engine gets a new view on the same
counts), as the core's per-plugin counters do; the metrics read them at scrape time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OPERATIONS", "CountedStorage", "StorageCounts", "is_counted"]

#: the StoragePlugin methods counted, the ``operation`` label's only values
OPERATIONS = ("get", "set", "delete", "exists", "expire", "ttl")


class CountedStorage:
    """A storage engine seen through a view that counts its calls; every other attribute is the engine's."""

    __slots__ = ("_engine", "_counts", "_get", "_set", "_delete", "_exists", "_expire", "_ttl")

    def __init__(self, engine: Any, counts: tuple[list[int], ...]) -> None:
        self._engine = engine
        self._counts = counts
        self._get, self._set, self._delete, self._exists, self._expire, self._ttl = counts

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._engine, attr)

    def __repr__(self) -> str:
        return f"<counted {self._engine!r}>"

    # Spelled out, one per method: a generic (*args, **kwargs) wrapper costs about three times as much a call.
    async def get(self, key: str) -> Any:
        n = self._get
        n[0] += 1
        try:
            return await self._engine.get(key)
        except Exception:
            n[1] += 1
            raise

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> Any:
        n = self._set
        n[0] += 1
        try:
            return await self._engine.set(key, value, ttl)
        except Exception:
            n[1] += 1
            raise

    # An engine's synchronous core (MemoryStorage.get_now, set_now), counted as its get and set.
    def get_now(self, key: str) -> Any:
        n = self._get
        n[0] += 1
        try:
            return self._engine.get_now(key)
        except Exception:
            n[1] += 1
            raise

    def set_now(self, key: str, value: bytes, ttl: float | None = None) -> Any:
        n = self._set
        n[0] += 1
        try:
            return self._engine.set_now(key, value, ttl)
        except Exception:
            n[1] += 1
            raise

    async def delete(self, key: str) -> Any:
        n = self._delete
        n[0] += 1
        try:
            return await self._engine.delete(key)
        except Exception:
            n[1] += 1
            raise

    async def exists(self, key: str) -> Any:
        n = self._exists
        n[0] += 1
        try:
            return await self._engine.exists(key)
        except Exception:
            n[1] += 1
            raise

    async def expire(self, key: str, ttl: float | None) -> Any:
        n = self._expire
        n[0] += 1
        try:
            return await self._engine.expire(key, ttl)
        except Exception:
            n[1] += 1
            raise

    async def ttl(self, key: str) -> Any:
        n = self._ttl
        n[0] += 1
        try:
            return await self._engine.ttl(key)
        except Exception:
            n[1] += 1
            raise

    async def atomic(self, ops: list[Any], watch: object | None = None) -> Any:
        """A transaction's calls (EXEC's), each counted as its operation when it ran; a failed one as an error."""
        results = await self._engine.atomic(ops, watch)
        if results is not None:
            for op, result in zip(ops, results):
                n = self._by_name(op.method)
                if n is not None:
                    n[0] += 1
                    if isinstance(result, BaseException):
                        n[1] += 1
        return results

    def _by_name(self, method: str) -> list[int] | None:
        if method in OPERATIONS:
            return self._counts[OPERATIONS.index(method)]
        return None


def is_counted(obj: Any) -> bool:
    """Whether *obj* is a counting view (``obj._engine`` is then the engine)."""
    return type(obj) is CountedStorage


class StorageCounts:
    """The views handed out and the counts behind them, for one manager."""

    def __init__(self) -> None:
        #: engine name -> one [calls, errors] per operation, in OPERATIONS order
        self._counts: dict[str, tuple[list[int], ...]] = {}
        #: engine name -> (the engine, its view); a reloaded engine gets a new view on the same counts
        self._views: dict[str, tuple[Any, CountedStorage]] = {}

    def view(self, name: str, engine: Any) -> CountedStorage:
        """The counting view of *engine*, the storage plugin registered as *name*."""
        held = self._views.get(name)
        if held is not None and held[0] is engine:
            return held[1]
        counts = self._counts.get(name)
        if counts is None:
            counts = self._counts[name] = tuple([0, 0] for _ in OPERATIONS)
        view = CountedStorage(engine, counts)
        self._views[name] = (engine, view)
        return view

    def forget(self, name: str) -> None:
        """Drop the view of an unloaded engine (its counts stay, in case it is loaded again)."""
        self._views.pop(name, None)

    def counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """engine name -> operation -> (calls, errors), for every engine a view was handed out for."""
        return {name: {op: (c[0], c[1]) for op, c in zip(OPERATIONS, per_op)}
                for name, per_op in self._counts.items()}
