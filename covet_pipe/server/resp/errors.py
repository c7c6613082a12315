"""The storage engine's error that RESP answers in redis's own words."""

from __future__ import annotations

__all__ = ["StorageFullError"]


class StorageFullError(RuntimeError):
    """A storage engine holds all the keys it may and may not evict (MemoryStorage at ``max_keys``).

    A RESP command that meets it is answered ``-OOM <message>``, as redis answers at ``maxmemory``.
    """
