"""The pipeline served by a real uvicorn on 127.0.0.1, driven by a real HTTP client."""

from __future__ import annotations

import httpx

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import RequestId
from tests.conftest import text_app


class Gate(MiddlewarePlugin):
    name = "gate"
    version = "1.0.0"
    priority = 50

    def process_request(self, request, ctx):
        if request.path.startswith("/deny"):
            return MiddlewareAction.reject(403, "denied by gate")
        request.headers.set("x-seen", "gate")

    def process_response(self, response, ctx):
        response.headers.add("x-gate", "1")


def test_served_request_runs_hooks_and_reaches_app(serve):
    manager = PluginManager()
    manager.register(Gate())
    manager.register(RequestId())
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/hello")
        assert r.status_code == 200
        assert r.text == "GET /hello seen=gate"
        assert r.headers["x-gate"] == "1"
        assert len(r.headers["x-request-id"]) == 32
        denied = httpx.get(s.url + "/deny/me")
        assert denied.status_code == 403
        assert denied.json() == {"error": "denied by gate"}
        assert denied.headers["x-request-id"]          # response hooks ran for the plugins that ran
        assert "x-gate" in denied.headers
    # lifespan shut the plugins down when the server stopped
    assert {p["state"] for p in manager.list_plugins()} == {"stopped"}
