"""UvicornHTTP: covet-pipe's compiled HTTP/1.1 connection as uvicorn's ``http`` class."""

from __future__ import annotations

import logging
from typing import Any

from covet_pipe.protocol import ConnectionInfo
from covet_pipe.server.http11 import _http11

__all__ = ["ConcurrencyLimit", "UvicornHTTP"]

_error_log = logging.getLogger("uvicorn.error")


class UvicornHTTP:
    """covet-pipe's HTTP/1.1 as uvicorn's ``http`` class: ``uvicorn.run(app, http=UvicornHTTP)``.

    Also ``uvicorn --http covet_pipe.server.http11:UvicornHTTP myapp:app``. Built on uvicorn's
    public surface (``Config(http=<class>)``, which uvicorn calls with ``config``,
    ``server_state``, ``app_state``): each connection is served by the same compiled
    connection as ``covet-pipe serve`` (no protocol chain: uvicorn has chosen HTTP already),
    registered in uvicorn's ``server_state.connections`` so its graceful shutdown waits for it.
    Limits and timeouts are ServeConfig's defaults; of uvicorn's settings, ``root_path``,
    ``timeout_keep_alive``, ``limit_concurrency`` (uvicorn's 503 past it), ``ws`` (``"none"``: no
    upgrade; ``"auto"``: covet-pipe's websocket; another: uvicorn's), ``ws_max_size``,
    ``ws_ping_interval``, ``ws_ping_timeout`` and the access log (uvicorn's ``uvicorn.access`` logger, in its
    format, on unless ``--no-access-log``) apply.
    """

    def __new__(cls, config: Any, server_state: Any, app_state: dict[str, Any], _loop: Any = None) -> Any:
        key = "_covet_http11_settings"
        settings = getattr(config, key, None)
        if settings is None or settings.state is not app_state:
            settings = _settings(config, server_state, app_state, _loop)
            setattr(config, key, settings)
        return _UvicornBridge(settings)


def _settings(config: Any, server_state: Any, app_state: dict[str, Any], loop: Any) -> _http11.Settings:
    """The compiled connections' settings for one uvicorn ``Config``: what carries over from it."""
    import asyncio
    from types import SimpleNamespace

    from covet_pipe.server.config import ServeConfig
    from covet_pipe.server.http11._ws import WebSocketProtocol
    if not config.loaded:
        config.load()
    access = logging.getLogger("uvicorn.access")
    serve_config = ServeConfig(
        root_path=config.root_path or "",
        keepalive_timeout=float(config.timeout_keep_alive) or 5.0,
        access_log=access.hasHandlers(),       # as uvicorn decides: --no-access-log removes its handlers
        ws_max_size=int(config.ws_max_size),
        ws_ping_interval=float(config.ws_ping_interval or 0),
        ws_ping_timeout=float(config.ws_ping_timeout or 0))
    app = config.loaded_app
    if config.limit_concurrency is not None:
        app = ConcurrencyLimit(app, int(config.limit_concurrency), server_state)
    server = SimpleNamespace(app=app, config=serve_config, loop=loop or asyncio.get_event_loop(),
                             connections=server_state.connections, state=app_state)
    settings = _http11.Settings(server, _websocket_factory(config, server_state, app_state, WebSocketProtocol))
    settings.access_logger = access
    return settings


def _websocket_factory(config: Any, server_state: Any, app_state: dict[str, Any], ours: Any) -> Any:
    """What takes a websocket upgrade, as uvicorn's ``ws`` says.

    ``"none"`` (and no websocket library, which uvicorn resolves to None as well): nothing, the
    request is served as plain HTTP. ``"auto"``: covet-pipe's websocket (on the ``websockets``
    package, what uvicorn's auto picks). A named implementation or a class: uvicorn's, made as
    uvicorn makes it, handed the transport and the handshake's bytes.
    """
    uvicorn_ws = config.ws_protocol_class
    if uvicorn_ws is None:
        return None
    if config.ws == "auto":
        return ours

    def uvicorn_websocket(info: Any, settings: Any) -> Any:
        return uvicorn_ws(config=config, server_state=server_state, app_state=app_state)

    return uvicorn_websocket


class ConcurrencyLimit:
    """uvicorn's ``limit_concurrency``: past it, an HTTP request gets uvicorn's 503 instead of the app.

    Counted as uvicorn counts: the server's open connections (this one included) and its tasks.
    """

    __slots__ = ("app", "limit", "server_state")

    def __init__(self, app: Any, limit: int, server_state: Any) -> None:
        self.app = app
        self.limit = limit
        self.server_state = server_state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self.server_state
        if scope["type"] == "http" and (len(state.connections) >= self.limit or len(state.tasks) >= self.limit):
            _error_log.warning("Exceeded concurrency limit.")
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", b"19"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": b"Service Unavailable", "more_body": False})
            return
        await self.app(scope, receive, send)


class _UvicornBridge:
    """Steps aside at connection_made: the compiled connection takes the transport.

    Whoever still holds this object (uvicorn hands it to the loop, which forgets it once the
    transport's protocol is changed) reaches the connection through it.
    """

    __slots__ = ("settings", "conn")

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    @property
    def loop(self) -> Any:
        return self.settings.loop

    def connection_made(self, transport: Any) -> None:
        info = ConnectionInfo.of_transport(
            transport, scheme="https" if transport.get_extra_info("sslcontext") else "http")
        conn = _http11.connection_factory(info, self.settings)
        self.conn = conn
        transport.set_protocol(conn)
        conn.connection_made(transport)

    def __getattr__(self, name: str) -> Any:
        if name == "conn":
            raise AttributeError(name)
        return getattr(self.conn, name)
