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

from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["OPERATIONS", "CountedStorage", "StorageCounts", "is_counted"]

#: the StoragePlugin methods counted, the ``operation`` label's only values
OPERATIONS = ("get", "set", "delete", "exists", "expire", "ttl")


def _counted(index: int, op: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def call(self: CountedStorage, *args: Any, **kwargs: Any) -> Any:
        n = self._counts[index]
        n[0] += 1
        try:
            return await getattr(self._engine, op)(*args, **kwargs)
        except Exception:
            n[1] += 1
            raise
    call.__name__ = call.__qualname__ = op
    return call


class CountedStorage:
    """A storage engine seen through a view that counts its calls; every other attribute is the engine's."""

    __slots__ = ("_engine", "_counts")

    def __init__(self, engine: Any, counts: tuple[list[int], ...]) -> None:
        self._engine = engine
        self._counts = counts

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._engine, attr)

    def __repr__(self) -> str:
        return f"<counted {self._engine!r}>"

    get = _counted(0, "get")
    set = _counted(1, "set")
    delete = _counted(2, "delete")
    exists = _counted(3, "exists")
    expire = _counted(4, "expire")
    ttl = _counted(5, "ttl")


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
