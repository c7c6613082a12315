"""MemoryStorage's read-modify-write operations (the optional part of the StoragePlugin contract).

Each runs without awaiting, so no other coroutine's call comes in between: atomic on the event loop.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections import OrderedDict
from typing import Any, Callable

from covet_pipe.storage.checks import check_key, check_value
from covet_pipe.storage.numbers import add_float, add_int
from covet_pipe.storage_compound import StorageOp

__all__ = ["MemoryOps", "glob_regex"]


def _now(coro: Any) -> Any:
    """The result of a MemoryStorage call's coroutine, which never suspends."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("MemoryStorage.atomic(): a call awaited something that suspends (another engine, a "
                       "network call); only MemoryStorage's own calls may run in it")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """redis's glob (``*``, ``?``, ``[...]``, ``[^...]``, backslash escapes) as a regular expression."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "[":
            j = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("^", "!") else i + 1)
            if j > 0:
                body = pattern[i + 1:j]
                neg = body[:1] == "^"
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = j + 1
                continue
        out.append(fnmatch.translate(c)[4:-3] if c in "*?" else re.escape(c))
        i += 1
    return re.compile("(?s:" + "".join(out) + r")\Z")


class MemoryOps:
    """Mixed into MemoryStorage: its ``_data`` (key -> (value, deadline)) and ``_live(key)``."""

    _data: OrderedDict[str, tuple[bytes, float | None]]
    _live: Callable[[str], tuple[bytes, float | None] | None]       # MemoryStorage's

    def _put(self, key: str, value: bytes, deadline: float | None) -> None:
        # an existing key keeps its place in max_keys; a new one goes through set()'s checks
        self._data[key] = (value, deadline)
        self._data.move_to_end(key)

    def _replace(self, key: str, value: bytes) -> None:
        """Store *value* under *key* keeping its expiry (INCR, APPEND), or as a new key without one."""
        item = self._live(key)
        if item is None:
            self._store_new(key, value)
        else:
            self._put(key, value, item[1])

    def _store_new(self, key: str, value: bytes) -> None:
        coro: Any = self.set(key, value)    # type: ignore[attr-defined]  # MemoryStorage.set never awaits
        try:
            coro.send(None)
        except StopIteration:
            pass

    async def incr_by(self, key: str, delta: int) -> int:
        """Add *delta* to the integer at *key* (absent: 0); its expiry stays."""
        return self.incr_by_now(key, delta)

    def incr_by_now(self, key: str, delta: int) -> int:
        """:meth:`incr_by` without a coroutine (the RESP fast path calls it, see ``sync_ops``)."""
        item = self._live(check_key("MemoryStorage", key))
        result = add_int(None if item is None else item[0], delta)
        self._replace(key, b"%d" % result)
        return result

    async def incr_by_float(self, key: str, delta: bytes) -> bytes:
        """Add *delta* (a number's text) to the number at *key*; the new value's text."""
        item = self._live(check_key("MemoryStorage", key))
        result = add_float(None if item is None else item[0], delta)
        self._replace(key, result)
        return result

    async def append(self, key: str, value: bytes) -> int:
        """Append *value* to *key*'s value; the new length."""
        item = self._live(check_key("MemoryStorage", key))
        data = (b"" if item is None else item[0]) + check_value("MemoryStorage", key, value)
        self._replace(key, data)
        return len(data)

    async def get_set(self, key: str, value: bytes) -> bytes | None:
        """Store *value* without expiry; the old value."""
        item = self._live(check_key("MemoryStorage", key))
        data = check_value("MemoryStorage", key, value)
        if item is None:
            self._store_new(key, data)
            return None
        self._put(key, data, None)
        return item[0]

    async def get_del(self, key: str) -> bytes | None:
        """Remove *key*; its value."""
        item = self._live(check_key("MemoryStorage", key))
        if item is None:
            return None
        del self._data[key]
        return item[0]

    async def set_many(self, items: list[tuple[str, bytes]], only_new: bool = False) -> bool:
        """Store every pair without expiry; with *only_new*, nothing if any key exists."""
        return self.set_many_now(items, only_new)

    def set_many_now(self, items: list[tuple[str, bytes]], only_new: bool = False) -> bool:
        """:meth:`set_many` without a coroutine (the RESP fast path calls it, see ``sync_ops``)."""
        pairs = [(check_key("MemoryStorage", k), check_value("MemoryStorage", k, v)) for k, v in items]
        if only_new and any(self._live(k) is not None for k, _ in pairs):
            return False
        data = self._data
        move_to_end = data.move_to_end
        for k, v in pairs:
            if k in data:                   # _put, inlined: MSET's keys are mostly there already
                data[k] = (v, None)
                move_to_end(k)
            else:
                self._store_new(k, v)
        return True

    async def keys(self, pattern: str = "*") -> list[str]:
        """The live keys matching *pattern* (redis glob)."""
        now = time.monotonic()
        live = [k for k, (_, d) in self._data.items() if d is None or d > now]
        if pattern == "*":
            return live
        match = glob_regex(pattern).match
        return [k for k in live if match(k)]

    async def flush(self) -> None:
        """Remove every key."""
        await self.clear()                  # type: ignore[attr-defined]

    async def atomic(self, ops: list[StorageOp], watch: object | None = None) -> list[object] | None:
        """Run every op to its end without yielding to the event loop: nothing else runs meanwhile.

        Each op's result, or the exception it raised; None, running nothing, if a key of *watch*
        (what :meth:`watch` returned: the keys' :meth:`key_version`) was written since.
        """
        if isinstance(watch, dict):
            for key, version in watch.items():
                if _now(self.key_version(key)) != version:
                    return None
        results: list[object] = []
        for op in ops:
            if op.method.startswith("_"):
                raise ValueError(f"MemoryStorage.atomic(): {op.method!r} is not an engine call")
            try:
                results.append(_now(getattr(self, op.method)(*op.args, **op.kwargs)))
            except Exception as exc:
                results.append(exc)
        return results

    async def key_count(self) -> tuple[int, int]:
        """(live keys, those of them with an expiry)."""
        now = time.monotonic()
        live = [d for _, d in self._data.values() if d is None or d > now]
        return len(live), sum(1 for d in live if d is not None)

    async def key_version(self, key: str) -> object:
        """A token that changes whenever *key* is written, expires or is removed (WATCH)."""
        item = self._live(check_key("MemoryStorage", key))
        # each write stores a new tuple: same id while the token holds it means the same write
        return None if item is None else (id(item), item)
