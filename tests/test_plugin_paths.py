"""``paths``: a hook-style plugin scoped to route paths; the core skips it elsewhere without a call."""

from __future__ import annotations

from pathlib import Path

import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, PluginValidationError, wrap
from tests._helpers import asgi_call, echo_app


class Scoped(MiddlewarePlugin):
    name = "scoped"
    version = "1.0.0"
    paths = ("/metrics", "/api/")

    def __init__(self) -> None:
        self.seen: list[str] = []

    def process_request(self, request, ctx):
        self.seen.append(request.path)
        if request.path == "/api/no":
            return MiddlewareAction.reject(403)
        return None

    def process_response(self, response, ctx):
        response.headers.set("x-scoped", "1")


async def _served(plugin) -> tuple[PluginManager, object]:
    manager = PluginManager()
    manager.register(plugin)
    await manager.initialize_all()
    return manager, wrap(echo_app, manager)


async def test_the_plugin_runs_on_its_paths_alone_both_hooks() -> None:
    plugin = Scoped()
    manager, app = await _served(plugin)
    for path in ("/", "/metrics", "/metricsx", "/metrics/", "/api", "/api/", "/api/users", "/apix/y"):
        result = await asgi_call(app, path)
        on = path in ("/metrics", "/api/", "/api/users")
        assert (result.header("x-scoped") == "1") is on, path
    assert plugin.seen == ["/metrics", "/api/", "/api/users"]
    assert (await asgi_call(app, "/api/no")).status == 403
    entry = manager.chain.current.entries[0]
    assert entry.paths == ("/metrics", "/api/") and entry.stats.calls == 4    # skipped requests are not calls


async def test_paths_are_route_paths_under_a_root_path() -> None:
    plugin = Scoped()
    _, app = await _served(plugin)

    async def call(path: str, root: str):
        from tests._helpers import http_scope
        scope = http_scope(path)
        scope["root_path"] = root
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(m):
            sent.append(m)
        await app(scope, receive, send)
        return dict(sent[0]["headers"]).get(b"x-scoped")

    assert await call("/shop/metrics", "/shop") == b"1"      # the router sees /metrics
    assert await call("/shop/api/x", "/shop") == b"1"        # ... and /api/x
    assert await call("/shop/other", "/shop") is None        # ... and /other
    assert await call("/shopmetrics", "/shop") is None       # a prefix comes off at a segment boundary only
    assert plugin.seen == ["/shop/metrics", "/shop/api/x"]


@pytest.mark.parametrize("paths, message", [
    ("/metrics", "paths must be a tuple of route paths"),
    (("metrics",), "paths must be a tuple of route paths"),
    ((b"/metrics",), "paths must be a tuple of route paths"),
])
def test_bad_paths_are_refused_naming_the_plugin(paths, message) -> None:
    class Bad(MiddlewarePlugin):
        name = "bad"
        version = "1.0.0"

    plugin = Bad()
    plugin.paths = paths
    with pytest.raises(PluginValidationError, match=rf"plugin 'bad'.*{message}.*write paths = \("):
        PluginManager().register(plugin)


def test_a_call_next_plugin_cannot_declare_paths() -> None:
    class Around(MiddlewarePlugin):
        name = "around"
        version = "1.0.0"
        paths = ("/api/",)

        async def process_request(self, request, call_next):
            return await call_next(request)

    with pytest.raises(PluginValidationError, match="paths scopes hook-style plugins"):
        PluginManager().register(Around())


async def test_a_sandboxed_plugin_keeps_its_paths(tmp_path: Path) -> None:
    source = tmp_path / "tagger.py"
    source.write_text(
        "from covet_pipe import MiddlewarePlugin\n\n"
        "class Tagger(MiddlewarePlugin):\n"
        "    name = 'tagger'\n    version = '1.0.0'\n    paths = ('/tagged/',)\n\n"
        "    def process_response(self, response, ctx):\n"
        "        response.headers.set('x-tagged', 'yes')\n\n"
        "plugin = Tagger()\n")
    manager = PluginManager()
    await manager.load_plugin_from_path(str(source), sandbox=True)
    await manager.initialize_all()
    app = wrap(echo_app, manager)
    try:
        assert (await asgi_call(app, "/tagged/x")).header("x-tagged") == "yes"
        assert (await asgi_call(app, "/other")).header("x-tagged") is None
    finally:
        await manager.shutdown_all()
