"""ASGI embedding: Pipeline puts the plugin chain in front of any ASGI 3 app."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from covet_pipe._core import PipelineCore
from covet_pipe.config import PluginConfig
from covet_pipe.logsafe import logger, printable
from covet_pipe.manager import PluginManager

__all__ = ["Pipeline", "wrap"]

#: the app's exceptions are logged with their messages escaped, tracebacks included
log = logger("covet_pipe.asgi")

_UNAVAILABLE = b'{"error":"Service Unavailable"}'


def _mark_coroutine_function(fn: Any) -> Any:
    # Servers pick ASGI 2 or 3 by asking whether __call__ is a coroutine
    # function; ours is compiled and returns the awaitable itself (no extra
    # coroutine per request), so it carries the marker asyncio looks for.
    fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]  # private marker, not in typeshed
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        inspect.markcoroutinefunction(fn)
    return fn


class Pipeline(PipelineCore):
    """ASGI 3 middleware that runs the plugin chain in front of *app*.

    ``Pipeline(app, manager=manager)``; Starlette and FastAPI take it as
    ``app.add_middleware(Pipeline, manager=manager)``. Lifespan starts the
    plugins before the app's startup and stops them after its shutdown.

    :param app: any ASGI 3 application.
    :param manager: the PluginManager whose chain runs; a new empty one if omitted.
    :param config: settings for that new manager (ignored when *manager* is given).
    """

    __call__ = _mark_coroutine_function(PipelineCore.call)

    def __init__(self, app: Any, manager: PluginManager | None = None, *,
                 config: PluginConfig | None = None) -> None:
        if not callable(app):
            raise TypeError(f"Pipeline(app): app must be an ASGI application (a callable), got {app!r}")
        self.app = app
        self.manager = manager if manager is not None else PluginManager(config)
        self.chain = self.manager.chain

    async def _first_request(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No lifespan, plugins registered since, or a later start after a shutdown (a Starlette
        # TestClient used again): start them; requests that arrive meanwhile wait on the manager's lock.
        if self.manager.status != "stopping":
            await self.manager.initialize_all()
        if not self.chain.ready:
            await _unavailable(scope, send)
            return
        await self.call(scope, receive, send)

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run the app's lifespan with the plugins' around it; the app's own failures reach the server.

        An app that raises before it receives ``lifespan.startup`` is taken not to speak lifespan (as
        uvicorn's ``--lifespan auto`` does) and covet-pipe runs one for the plugins alone. Once it has received
        ``lifespan.startup``, an exception before it answers is a startup failure: the server gets
        ``lifespan.startup.failed`` with the exception's text (likewise for shutdown).
        """
        received: str | None = None     # the last lifespan event the app received
        answered = False                # the app answered it (complete or failed)
        manager = self.manager

        async def lifespan_receive() -> dict[str, Any]:
            nonlocal received, answered
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.startup":
                await manager.initialize_all()
            received, answered = message["type"], False
            return message

        async def lifespan_send(message: dict[str, Any]) -> None:
            nonlocal answered
            answered = True
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed",
                                   "lifespan.startup.failed"):
                await manager.shutdown_all()
            await send(message)

        try:
            await self.app(scope, lifespan_receive, lifespan_send)
        except Exception as exc:
            if received is None:
                log.info("the app does not handle lifespan (%s: %s); covet-pipe runs it for the plugins",
                         type(exc).__name__, printable(str(exc)))
                await self._own_lifespan(receive, send)
                return
            if not answered:
                log.error("the app raised in %s", received, exc_info=exc)
                await manager.shutdown_all()
                await send({"type": f"{received}.failed", "message": f"{type(exc).__name__}: {exc}"})
            raise
        if received is None:
            await self._own_lifespan(receive, send)

    async def _own_lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.manager.initialize_all()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": f"covet-pipe: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.manager.shutdown_all()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _unavailable(scope: dict[str, Any], send: Any) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(_UNAVAILABLE)).encode())]})
    await send({"type": "http.response.body", "body": _UNAVAILABLE})


def wrap(app: Any, manager: PluginManager | None = None, *, config: PluginConfig | None = None) -> Pipeline:
    """Put the plugin chain of *manager* in front of *app*; hand the result to any ASGI server."""
    return Pipeline(app, manager, config=config)
