"""covet_pipe.testing: what plugin authors use in their own tests."""

from __future__ import annotations

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, Request, wrap
from covet_pipe.testing import call, make_context
from tests.conftest import text_app


class Needs(MiddlewarePlugin):
    name = "needs"
    version = "1.0.0"

    def process_request(self, request, ctx):
        ctx.state["seen"] = request.path
        if request.headers.get("x-key") != "k":
            return MiddlewareAction.reject(401, "key please")


def test_make_context_lets_a_hook_be_called_directly():
    ctx = make_context(Request(path="/x", headers={"x-key": "k"}))
    assert Needs().process_request(ctx.request, ctx) is None
    assert ctx.state == {"seen": "/x"}
    refused = Needs().process_request(Request(path="/y"), make_context())
    assert refused.response.status == 401


async def test_call_runs_a_request_through_a_pipeline():
    manager = PluginManager()
    manager.register(Needs())
    app = wrap(text_app, manager)
    denied = await call(app, "GET", "/a")
    assert (denied.status, denied.body) == (401, b'{"error":"key please"}')
    ok = await call(app, "POST", "/b", headers={"x-key": "k"})
    assert (ok.status, ok.body) == (200, b"POST /b seen=")
