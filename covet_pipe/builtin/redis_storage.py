"""RedisStorage, the ``redis`` storage engine, by its built-in name: ``covet_pipe.builtin.RedisStorage``.

The engine is the package :mod:`covet_pipe.storage` (:mod:`covet_pipe.storage.redis_engine`); register
it and ``manager.get_storage_engine("redis")`` finds it.
"""

from covet_pipe.storage import RedisStorage, StorageError, StorageUnavailableError

__all__ = ["RedisStorage", "StorageError", "StorageUnavailableError"]
