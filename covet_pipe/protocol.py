"""The protocol contract: what covet-pipe's listener asks of a ProtocolPlugin.

A connection's first bytes go down the *protocol chain*, the protocol plugins in
``(priority, name)`` order. Each plugin's :meth:`ProtocolPlugin.detect` says
:data:`MATCH`, :data:`NEED_MORE` or :data:`NO`:

* a **layer** (``layer = True``, such as PROXY v1/v2) that matches consumes a
  prefix in :meth:`ProtocolPlugin.unwrap`, may record facts on the
  :class:`ConnectionInfo` (the real client address) and hands the rest on to the
  plugins after it;
* a **terminal** protocol that matches owns the connection from then on: its
  :meth:`ProtocolPlugin.connection_protocol` returns an ``asyncio.Protocol`` that
  the listener hands the transport to (``connection_made``) and then the bytes
  read so far (``data_received``). A plugin that would rather work on streams
  overrides :meth:`ProtocolPlugin.handle_connection` instead.

Whatever protocol carries a request, it runs the same middleware chain:
``server.pipeline.call(scope, receive, send)`` with ``scope["type"]`` set to the
protocol's name (``"http"``, ``"resp"`` ...). The middleware plugins that list
that name in their ``protocols`` see it as a :class:`~covet_pipe.Request`; the
others are skipped. A request of a non-HTTP protocol answers with the same
``http.response.start`` / ``http.response.body`` messages an HTTP app sends, so a
middleware plugin's short-circuit (401, 403, 429 ...) reaches the protocol as a
``Response`` it turns into its own error shape.

A connection whose first bytes no plugin claims is closed with a logged reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from covet_pipe.manager import PluginManager

__all__ = ["MATCH", "NEED_MORE", "NO", "ConnectionInfo", "ProtocolError", "ServerContext"]

#: the first bytes are this protocol's
MATCH = "match"
#: too few bytes to tell; ask again when more arrive
NEED_MORE = "need_more"
#: not this protocol
NO = "no"


class ProtocolError(Exception):
    """Bytes a protocol cannot accept; the listener logs it and closes the connection."""

    def __init__(self, message: str, *, plugin_name: str | None = None) -> None:
        super().__init__(message)
        self.plugin_name = plugin_name


@dataclass
class ConnectionInfo:
    """What the listener knows about one connection; protocols read and add to it.

    ``peer`` is the socket's remote address; ``client`` is what requests show as
    ``scope["client"]``: the peer, unless a trusted PROXY header replaced it.
    """

    peer: tuple[str, int] | None
    server: tuple[str, int] | None
    client: tuple[str, int] | None = None
    scheme: str = "http"
    #: names of the layers that unwrapped this connection, in order ("proxy" ...)
    layers: list[str] = field(default_factory=list)
    #: facts layers recorded (PROXY: "proxy_source", "proxy_destination", TLVs ...)
    facts: dict[str, Any] = field(default_factory=dict)
    #: the event loop's ``time()`` when the listener accepted the connection (None when not known):
    #: a protocol's first deadline (HTTP's ``header_timeout``) counts from it, detection included
    accepted_at: float | None = None

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = self.peer

    @classmethod
    def of_transport(cls, transport: Any, *, scheme: str = "http") -> ConnectionInfo:
        """The peer and server addresses of an asyncio *transport* (None where it has none)."""
        return cls(peer=_address(transport.get_extra_info("peername")),
                   server=_address(transport.get_extra_info("sockname")), scheme=scheme)


def _address(value: Any) -> tuple[str, int] | None:
    # (host, port) of a socket address; None for a Unix socket's path or no address
    if isinstance(value, tuple) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None


class ServerContext:
    """What a protocol's connection handler may use: the app, the chain, the limits.

    :ivar pipeline: the Pipeline: the ASGI app with the middleware chain in front;
        ``server.pipeline.call(scope, ...)`` runs the middleware chain for a non-HTTP
        request around the protocol's own handler (``server.pipeline_for(handler)``).
    :ivar app: the same Pipeline, by the name an HTTP protocol calls it
        (``await server.app(scope, receive, send)``).
    :ivar manager: the PluginManager (services, storage engine, auth provider).
    :ivar config: the listener's settings (limits, timeouts; ``ServeConfig``).
    :ivar state: the lifespan state: each request's ``scope["state"]`` is a copy of it.
    """

    def __init__(self, pipeline: Any, manager: PluginManager, config: Any, loop: Any = None) -> None:
        self.pipeline = pipeline
        self.manager = manager
        self.config = config
        self.loop = loop
        self.state: dict[str, Any] = {}
        #: live connection handlers; graceful shutdown asks each to finish
        self.connections: set[Any] = set()
        self.shutting_down = False

    @property
    def app(self) -> Any:
        """The ASGI app with the middleware chain in front (the Pipeline)."""
        return self.pipeline

    def pipeline_for(self, handler: Any) -> Any:
        """The middleware chain in front of a protocol's own ASGI-shaped *handler*.

        The result shares the manager's chain (a reload reaches it at once);
        ``await p(scope, receive, send)`` runs the plugins that list
        ``scope["type"]`` and then *handler*.
        """
        from covet_pipe.asgi import Pipeline
        return Pipeline(handler, manager=self.manager)
