"""covet-pipe's storage engines beyond the in-process one: :class:`RedisStorage`, and the errors a call raises.

``covet_pipe.builtin.RedisStorage`` is the name to register it by; the argument checks every engine
makes are in :mod:`covet_pipe.storage.checks`.
"""

from covet_pipe.storage.errors import StorageError, StorageUnavailableError
from covet_pipe.storage.redis_engine import RedisStorage

__all__ = ["RedisStorage", "StorageError", "StorageUnavailableError"]
