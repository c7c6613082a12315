"""The protocol chain: which protocol plugin owns a new connection.

Every accepted connection starts under a :class:`Detector`. It buffers the
first bytes and asks :meth:`ProtocolChain.claim`, which walks the protocol
plugins in ``(priority, name)`` order:

* a layer (PROXY ...) that matches consumes its prefix, records facts on the
  :class:`~covet_pipe.protocol.ConnectionInfo` and the walk goes on after it;
* the first terminal protocol that matches owns the connection: the detector
  hands it the transport and the bytes read so far, and steps aside
  (``transport.set_protocol``), so detection costs nothing after it;
* ``NEED_MORE`` from any plugin before a match waits for more bytes, bounded by
  ``max_detect_bytes`` and ``header_timeout`` (counted from accept: the time detection took
  counts toward HTTP's first head too, through ``ConnectionInfo.accepted_at``);
* nothing claims the bytes: the connection is closed and the reason logged (a TLS
  ClientHello sent to a chain that speaks plain HTTP is named as such).

The chain reads the manager's active protocol plugins on every claim, so a
reloaded protocol serves new connections from its swap on while connections
it already owns finish on the old version.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Iterable

from covet_pipe.logsafe import printable
from covet_pipe.protocol import MATCH, NEED_MORE, NO, ConnectionInfo, ProtocolError, ServerContext

__all__ = ["ProtocolChain", "Detector", "StreamBridge"]

log = logging.getLogger("covet_pipe.server")

_VERDICTS = (MATCH, NEED_MORE, NO)


def _key(plugin: Any) -> tuple[int, str]:
    return (int(getattr(plugin, "priority", 100)), str(plugin.name))


def _is_tls_hello(data: bytes) -> bool:
    """A TLS handshake record: content type 0x16, then a version 0x03 0x00..0x04 (SSL 3.0 to TLS 1.3)."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


class ProtocolChain:
    """The protocol plugins in ``(priority, name)`` order, and the walk over them.

    :param manager: the PluginManager whose active protocol plugins take part.
    :param builtins: protocol plugins that join unless a registered plugin
        already speaks their ``protocol_name`` (the built-in HTTP/1.1, so a
        manager without protocol plugins still serves HTTP).
    """

    def __init__(self, manager: Any, builtins: Iterable[Any] = (), config: Any = None) -> None:
        self.manager = manager
        self.builtins = tuple(builtins)
        self.config = config
        self._seen: tuple[Any, ...] | None = None
        self._plugins: tuple[Any, ...] = ()

    def plugins(self) -> tuple[Any, ...]:
        """The current chain: registered active protocol plugins plus the built-ins they leave."""
        records = self.manager.protocol_records() if self.manager is not None else ()
        if records is not self._seen:
            registered = [r.plugin for r in records]
            spoken = {getattr(p, "protocol_name", None) for p in registered}
            names = {r.name for r in records}
            extra = [b for b in self.builtins
                     if b.protocol_name not in spoken and b.name not in names]
            self._plugins = tuple(sorted(registered + extra, key=_key))
            if self.config is not None:
                for p in self._plugins:
                    # listener-wide settings a protocol may take (PROXY: trusted_proxies)
                    use = getattr(p, "use_server_config", None)
                    if use is not None:
                        use(self.config)
            self._seen = records
        return self._plugins

    def claim(self, data: bytes, conn: ConnectionInfo) -> tuple[str, Any, int]:
        """Walk the chain over *data*: ``(verdict, plugin, consumed)``.

        ``consumed`` bytes at the front of *data* were taken by layers (the
        caller drops them); they are recorded in ``conn.layers`` and not asked
        again. ``MATCH`` comes with the terminal plugin that owns the rest.
        A layer that rejects its bytes raises :class:`ProtocolError`.
        """
        consumed = 0
        waiting = False
        view = data
        for plugin in self.plugins():
            is_layer = bool(getattr(plugin, "layer", False))
            if is_layer and plugin.name in conn.layers:
                continue
            verdict = self._detect(plugin, view)
            if verdict == NO:
                continue
            if verdict == NEED_MORE:
                # an earlier plugin might still claim these bytes: wait, don't skip ahead
                waiting = True
                break
            if not is_layer:
                return MATCH, plugin, consumed
            try:
                used = plugin.unwrap(view, conn)
            except ProtocolError as exc:
                exc.plugin_name = exc.plugin_name or plugin.name
                raise
            except Exception as exc:
                raise ProtocolError(f"protocol layer {plugin.name!r} failed on the connection's first "
                                    f"bytes: {type(exc).__name__}: {exc}", plugin_name=plugin.name) from exc
            if used is None:
                waiting = True
                break
            if not 0 <= used <= len(view):
                raise ProtocolError(f"protocol layer {plugin.name!r} reported {used} bytes consumed of "
                                    f"{len(view)}: unwrap() must return 0..len(data) or None",
                                    plugin_name=plugin.name)
            conn.layers.append(plugin.name)
            consumed += used
            view = view[used:]
            if not view:
                waiting = True
                break
            return self.claim_rest(view, conn, consumed)
        return (NEED_MORE if waiting else NO), None, consumed

    def claim_rest(self, view: bytes, conn: ConnectionInfo, consumed: int) -> tuple[str, Any, int]:
        verdict, plugin, more = self.claim(view, conn)
        return verdict, plugin, consumed + more

    @staticmethod
    def _detect(plugin: Any, data: bytes) -> str:
        try:
            verdict: str = plugin.detect(data)      # by contract; checked below
        except ProtocolError as exc:
            exc.plugin_name = exc.plugin_name or plugin.name
            raise
        except Exception as exc:
            log.error("protocol plugin %r: detect() raised %s: %s; it is skipped for this connection "
                      "(fix detect() to return 'match', 'need_more' or 'no')",
                      plugin.name, type(exc).__name__, exc)
            return NO
        if verdict not in _VERDICTS:
            log.error("protocol plugin %r: detect() returned %r; it must return 'match', 'need_more' "
                      "or 'no' (covet_pipe.protocol.MATCH ...); it is skipped", plugin.name, verdict)
            return NO
        return verdict


class Detector(asyncio.Protocol):
    """The protocol every accepted connection starts with, until a plugin claims it."""

    __slots__ = ("chain", "server", "transport", "conn", "buf", "timer", "done")

    def __init__(self, chain: ProtocolChain, server: ServerContext) -> None:
        self.chain = chain
        self.server = server
        self.transport: Any = None
        self.conn: ConnectionInfo | None = None
        self.buf = b""
        self.timer: Any = None
        self.done = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.conn = ConnectionInfo.of_transport(transport)
        if self.server.shutting_down:
            transport.close()
            self.done = True
            return
        loop = self.server.loop or asyncio.get_running_loop()
        self.conn.accepted_at = loop.time()
        timeout = getattr(self.server.config, "header_timeout", None)
        if timeout:
            # the protocol that claims the connection counts its first head from the same instant
            self.timer = loop.call_at(self.conn.accepted_at + timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.done:
            return
        self.buf = self.buf + data if self.buf else data
        assert self.conn is not None
        try:
            verdict, plugin, consumed = self.chain.claim(self.buf, self.conn)
        except ProtocolError as exc:
            log.info("closing the connection from %s: %s", self._peer(), exc)
            self._close()
            return
        if consumed:
            self.buf = self.buf[consumed:]
        if verdict == MATCH:
            self._hand_over(plugin)
        elif verdict == NO:
            plugins = self.chain.plugins()
            if _is_tls_hello(self.buf) and any(getattr(p, "protocol_name", None) == "http" for p in plugins):
                log.warning("closing the connection from %s: it opened with a TLS handshake, but this "
                            "port speaks plain HTTP (no TLS); the client should use http://, or put a "
                            "TLS-terminating proxy in front", printable(self._peer()))
            else:
                log.info("closing the connection from %s: no protocol plugin claims its first bytes %r "
                         "(protocols: %s)", printable(self._peer()), self.buf[:24],
                         ", ".join(p.name for p in plugins) or "none")
            self._close()
        else:
            limit = getattr(self.server.config, "max_detect_bytes", 8192)
            if len(self.buf) > limit:
                log.info("closing the connection from %s: %d bytes and no protocol plugin has "
                         "claimed them yet (max_detect_bytes=%d)", self._peer(), len(self.buf), limit)
                self._close()

    def eof_received(self) -> bool | None:
        self._close()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()
        self.done = True

    def _hand_over(self, plugin: Any) -> None:
        self.done = True
        self._cancel_timer()
        transport, rest = self.transport, self.buf
        self.buf = b""
        try:
            proto = plugin.connection_protocol(self.conn, self.server)
            if proto is None:
                proto = StreamBridge(plugin, self.server)
        except Exception:
            log.exception("protocol plugin %r: connection_protocol() failed; closing the connection "
                          "from %s (fix the plugin; other connections are served)", plugin.name,
                          self._peer())
            transport.close()
            return
        transport.set_protocol(proto)
        proto.connection_made(transport)
        if rest and not transport.is_closing():
            proto.data_received(rest)

    def _timed_out(self) -> None:
        self.timer = None
        if not self.done:
            log.info("closing the connection from %s: no protocol claimed it within header_timeout",
                     self._peer())
            self._close()

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _close(self) -> None:
        self.done = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def _peer(self) -> str:
        peer = self.conn.peer if self.conn is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"


class StreamBridge(asyncio.Protocol):
    """Runs a plugin's ``handle_connection(reader, writer, protocol)`` over asyncio streams."""

    def __init__(self, plugin: Any, server: ServerContext) -> None:
        self.plugin = plugin
        self.server = server
        self.reader = asyncio.StreamReader(limit=2 ** 16)
        self._stream: asyncio.StreamReaderProtocol | None = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: Any) -> None:
        loop = asyncio.get_running_loop()
        self._stream = asyncio.StreamReaderProtocol(self.reader)
        self._stream.connection_made(transport)
        writer = asyncio.StreamWriter(transport, self._stream, self.reader, loop)
        name = (self.plugin.supported_protocols() or [self.plugin.protocol_name or self.plugin.name])[0]
        self.task = loop.create_task(self._run(writer, name))
        self.server.connections.add(self)

    async def _run(self, writer: asyncio.StreamWriter, name: str) -> None:
        try:
            await self.plugin.handle_connection(self.reader, writer, name)
        except Exception:
            log.exception("protocol plugin %r: handle_connection() raised; the connection is closed "
                          "(other connections are served)", self.plugin.name)
        finally:
            self.server.connections.discard(self)
            writer.close()

    def data_received(self, data: bytes) -> None:
        assert self._stream is not None
        self._stream.data_received(data)

    def eof_received(self) -> bool | None:
        assert self._stream is not None
        return self._stream.eof_received()

    def pause_writing(self) -> None:
        assert self._stream is not None
        self._stream.pause_writing()

    def resume_writing(self) -> None:
        assert self._stream is not None
        self._stream.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None:
            self._stream.connection_lost(exc)

    async def shutdown(self) -> None:
        """Graceful shutdown: give the plugin's handler until it ends (the listener bounds it)."""
        if self.task is not None:
            await asyncio.wait({self.task})
