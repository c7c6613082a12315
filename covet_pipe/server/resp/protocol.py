"""RespProtocol: the Redis protocol (RESP2, RESP3 through HELLO) on covet-pipe's own listener."""

from __future__ import annotations

import weakref
from typing import Any

from covet_pipe.plugin import ProtocolPlugin
from covet_pipe.protocol import MATCH, NEED_MORE, NO
from covet_pipe.server.resp.codec import MAX_ARRAY, MAX_BULK, MAX_INLINE
from covet_pipe.server.resp.commands import is_command_name
from covet_pipe.server.resp.connection import RespConnection, handle

__all__ = ["RespProtocol"]

_WORD_END = frozenset(b" \t\r\n")


class RespProtocol(ProtocolPlugin):
    """Serves redis clients (redis-cli, redis-benchmark, redis-py) from a StoragePlugin.

    Every command runs the middleware chain as a Request (method = the command, path = its key
    decoded latin-1, ``scope["type"] == "resp"``), so plugins that list ``"resp"`` in their
    ``protocols`` guard or count it; AUTH's password becomes ``Authorization: Bearer <password>``
    on the commands after it (AuthGuard checks it). See docs/protocols.md.

    :param storage: the StoragePlugin's name; the first registered one when omitted.
    :param auth_provider: the AuthPlugin AUTH asks; when omitted, the provider of a guard that
        lists "resp" (AuthGuard), else the first registered AuthPlugin; none: AUTH acts as a redis
        without a password.
    :param max_bulk_bytes: the longest argument a command may carry.
    :param max_array_len: the most words in one command.
    :param max_inline_bytes: the longest inline (telnet-style) command.
    :param max_pending: commands parsed ahead of the one running before reading pauses.
    :param allow_flush: let clients run FLUSHDB and FLUSHALL (every key of the storage engine
        removed); off by default, when they answer an error that names this switch.
    """

    name = "resp"
    version = "1.0.0"
    protocol_name = "resp"
    # After HTTP (100): redis's inline commands are words HTTP's request line never starts with.
    priority = 200

    def __init__(self, *, storage: str | None = None, auth_provider: str | None = None,
                 max_bulk_bytes: int = MAX_BULK, max_array_len: int = MAX_ARRAY,
                 max_inline_bytes: int = MAX_INLINE, max_pending: int = 1024,
                 allow_flush: bool = False) -> None:
        for field, value in (("max_bulk_bytes", max_bulk_bytes), ("max_array_len", max_array_len),
                             ("max_inline_bytes", max_inline_bytes), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RespProtocol({field}=...): expected an integer >= 1, got {value!r}")
        for field, name in (("storage", storage), ("auth_provider", auth_provider)):
            if name is not None and (not isinstance(name, str) or not name):
                raise ValueError(f"RespProtocol({field}=...): expected a plugin name such as 'memory', "
                                 f"or None; got {name!r}")
        if not isinstance(allow_flush, bool):
            raise ValueError(f"RespProtocol(allow_flush=...): expected True or False, got {allow_flush!r}")
        self.allow_flush = allow_flush
        self.storage = storage
        self.auth_provider_name = auth_provider
        self.max_bulk_bytes = max_bulk_bytes
        self.max_array_len = max_array_len
        self.max_inline_bytes = max_inline_bytes
        self.max_pending = max_pending
        self._pipelines: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._storage_name: str | None = storage

    def detect(self, data: bytes) -> str:
        """A RESP array (``*``), or an inline command whose first word names a supported command."""
        if not data:
            return NEED_MORE
        if data[0] == 42:                            # '*'
            return MATCH
        i = 0
        n = min(len(data), 64)
        while i < n and data[i] in (32, 9):          # redis skips leading blanks
            i += 1
        start = i
        while i < n and data[i] not in _WORD_END:
            i += 1
        if i == start:
            return NEED_MORE if i == len(data) else NO
        return is_command_name(data[start:i], complete=i < len(data))

    def connection_protocol(self, conn: Any, server: Any) -> RespConnection:
        pipeline = self._pipelines.get(server)
        if pipeline is None:
            pipeline = self._pipelines[server] = server.pipeline_for(handle)
        return RespConnection(self, conn, server, pipeline)

    # -- what commands run against --------------------------------------------------------

    def storage_engine(self, manager: Any) -> Any:
        """The StoragePlugin for this command (by name, so a reloaded engine is the one used)."""
        name = self._storage_name
        if name is None:
            engine = manager.get_storage_engine()
            self._storage_name = getattr(engine, "name", None)
            return engine
        return manager.get_storage_engine(name)

    async def auth_provider(self, manager: Any) -> Any:
        """The AuthPlugin AUTH asks, or None when there is none."""
        if manager.status == "new":
            await manager.initialize_all()
        name = self.auth_provider_name
        if name is None:
            plugins = sorted((p for p in manager.list_plugins() if p["state"] != "failed"),
                             key=lambda p: (p["priority"], p["name"]))
            for p in plugins:                        # the provider a RESP guard asks
                guard = manager.get_plugin(p["name"])
                if "resp" in p["protocols"] and isinstance(getattr(guard, "provider_name", None), str):
                    name = guard.provider_name
                    break
            else:
                auth = [p["name"] for p in plugins if "auth" in p["kinds"]]
                if not auth:
                    return None
                name = auth[0]
        return manager.get_auth_provider(name)
