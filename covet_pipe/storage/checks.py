"""The argument checks every covet-pipe storage engine makes, with the same error types and words.

Keys are ``str``, values bytes-like, a TTL a finite number of seconds > 0 (or None: no expiry).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_key", "check_ttl", "check_value"]


def check_key(engine: str, key: Any) -> str:
    """*key*, or TypeError naming *engine* (a class name such as ``RedisStorage``)."""
    if not isinstance(key, str):
        raise TypeError(f"{engine} keys are str, got {type(key).__name__} ({key!r})")
    return key


def check_value(engine: str, key: str, value: Any) -> bytes:
    """*value* as bytes, or TypeError that says to encode text first."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)                 # a copy: a later change to the caller's buffer is not stored
    hint = "; encode it first: value.encode('utf-8')" if isinstance(value, str) else ""
    raise TypeError(f"{engine}.set({key!r}, ...): value must be bytes, got {type(value).__name__}{hint}")


def check_ttl(engine: str, call: str, key: str, ttl: Any) -> float | None:
    """*ttl* (seconds > 0, finite) or None, else ValueError; *call* is ``"set"`` or ``"expire"``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        where = f"{engine}.set({key!r}, ..., ttl=...)" if call == "set" else f"{engine}.expire({key!r}, ttl=...)"
        raise ValueError(f"{where}: expected seconds > 0 such as 60, or None for no expiry; got {ttl!r}")
    return float(ttl)
