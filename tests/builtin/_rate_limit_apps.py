"""What the RateLimit tests serve: an app that answers 200 "ok", and a pipeline of plugins around it."""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.testing import Result, call


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class SetsUser(MiddlewarePlugin):
    """Stands where an auth guard would: puts the verified claims of ``x-user`` in ``request.state["user"]``."""

    name = "sets_user"
    version = "1.0"
    priority = 200

    def process_request(self, request: Any, ctx: Any) -> None:
        sub = request.headers.get("x-user")
        if sub is not None:
            request.state["user"] = {"sub": sub}


class Served:
    def __init__(self, app: Any, manager: PluginManager) -> None:
        self.app = app
        self.manager = manager

    async def get(self, path: str = "/", **headers: str) -> Result:
        return await call(self.app, "GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})


@contextlib.asynccontextmanager
async def pipeline(*plugins: Any) -> AsyncIterator[Served]:
    """The plugins, initialised, around ok_app; shut down at the end."""
    manager = PluginManager()
    for plugin in plugins:
        manager.register(plugin)
    await manager.initialize_all()
    try:
        yield Served(wrap(ok_app, manager), manager)
    finally:
        await manager.shutdown_all()
