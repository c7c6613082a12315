"""Typing examples checked by mypy against covet_pipe's stubs (tests/test_typing.py).

Each `reveal_type` line carries the expected type after `# assert`.
"""

from __future__ import annotations

from covet_pipe import (
    Headers,
    MiddlewareAction,
    MiddlewarePlugin,
    Plugin,
    PluginConfig,
    PluginManager,
    Request,
    RequestContext,
    Response,
    wrap,
)


class Timer(MiddlewarePlugin):
    name = "timer"
    version = "1.0.0"

    def process_request(self, request: Request, ctx: RequestContext) -> object:
        reveal_type(request.headers)  # assert "Headers"
        reveal_type(request.headers.get("x"))  # assert "str | None"
        reveal_type(request.path)  # assert "str"
        reveal_type(ctx.state)  # assert "dict[str, Any]"
        return MiddlewareAction.reject(403, "no")

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        reveal_type(response.status)  # assert "int"
        response.headers.add("x-timer", "1")


class Counter(MiddlewarePlugin):
    """State across reloads: export_state and import_state may each be sync or async."""

    name = "counter"
    version = "1.0.0"

    def __init__(self) -> None:
        self.hits = 0

    async def export_state(self) -> dict[str, int]:
        return {"hits": self.hits}

    async def import_state(self, state: dict[str, int]) -> None:
        self.hits = state["hits"]


some_plugin: Plugin = Counter()
reveal_type(some_plugin.import_state({"hits": 1}))  # assert "Awaitable[None] | None"


async def app(scope: dict[str, object], receive: object, send: object) -> None: ...


manager = PluginManager(PluginConfig(plugin_paths=["./plugins"]))
reveal_type(manager.register(Timer()))  # assert "str"
reveal_type(wrap(app, manager))  # assert "Pipeline"
reveal_type(Headers({"a": "b"}).getall("a"))  # assert "list[str]"
reveal_type(Response.json({"a": 1}))  # assert "Response"
