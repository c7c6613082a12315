"""An app for the log-injection tests: a plugin whose error message quotes the client's path and header."""

from __future__ import annotations

from typing import Any

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import RequestId


class Quoting(MiddlewarePlugin):
    """Fails on /boom, quoting what the client sent, as careless plugins do."""

    name = "quoting"
    version = "1.0.0"

    def process_request(self, request: Any, ctx: Any) -> None:
        if request.path.startswith("/boom"):
            raise ValueError(f"cannot serve {request.path} for {request.headers.get('x-note')}")


async def ok(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"].startswith("/crash"):
        raise RuntimeError(f"the app cannot serve {scope['path']}")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


manager = PluginManager()
manager.register(RequestId())
manager.register(Quoting())
app = wrap(ok, manager)
