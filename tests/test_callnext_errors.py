"""Exceptions around a call_next plugin, through a real uvicorn: the app's, before and after its start.

Before the start the layer answers 500 itself unless the plugin catches the exception from
call_next; after it the exception goes on to the server. (Hook-only chains: the first test.)
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, Response, wrap
from tests.test_callnext import Hooked, Passthrough, manager_with


class AppError(Exception):
    pass


class OpenPassthrough(Passthrough):
    name = "open_passthrough"
    failure_policy = "open"


CHAINS = {
    "hook": lambda: [Hooked()],
    "call_next": lambda: [Passthrough()],
    "call_next-open": lambda: [OpenPassthrough()],
    "hook+call_next": lambda: [Hooked(), Passthrough()],
    "call_next*2": lambda: [Passthrough(), OpenPassthrough()],
}


def _serve_raising_app(serve, plugins):
    """A request to an app that raises before its response: (response, health, what reached the
    server, what the app raised, the paths the app ran for)."""
    raised: list = []
    reached_server: list = []
    calls: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        calls.append(scope["path"])
        exc = AppError("the app broke")
        raised.append(exc)
        raise exc

    manager = manager_with(*plugins)
    pipeline = wrap(app, manager)

    async def server_side(scope, receive, send):   # what uvicorn gets back from the pipeline
        try:
            await pipeline(scope, receive, send)
        except BaseException as exc:
            reached_server.append(exc)
            raise

    with serve(server_side) as s:
        r = httpx.get(s.url + "/")
        health = asyncio.run(manager.get_health_status())
    return r, health, reached_server, raised, calls


def test_app_exception_before_the_start_behind_a_hook_is_answered_500_by_the_pipeline(serve, caplog):
    r, health, reached_server, raised, calls = _serve_raising_app(serve, [Hooked()])
    assert calls == ["/"]
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})   # not uvicorn's text
    assert reached_server == []
    logged = [rec for rec in caplog.records if "the app raised before it started its response" in rec.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info[1] is raised[0]
    # the app's failure is not the plugins' failure
    assert all(p["errors"] == 0 for p in health["plugins"].values())


@pytest.mark.parametrize("make_chain", [CHAINS[k] for k in CHAINS if k != "hook"],
                         ids=[k for k in CHAINS if k != "hook"])
def test_app_exception_before_the_start_is_answered_500_by_the_call_next_layer(serve, make_chain, caplog):
    r, health, reached_server, raised, calls = _serve_raising_app(serve, make_chain())
    assert calls == ["/"]                     # the app ran once, even with a fail-open plugin
    # the layer answered (the plugin let the exception through): no traceback to the client, and
    # nothing for the server to answer
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    assert reached_server == []
    logged = [rec for rec in caplog.records if "the app raised before it started its response" in rec.getMessage()
              and rec.name == "covet_pipe.app"]
    assert len(logged) == 1 and logged[0].exc_info[1] is raised[0]
    # the app's failure is not the plugins' failure
    assert all(p["errors"] == 0 for p in health["plugins"].values())


class Catching(MiddlewarePlugin):
    name = "catching"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        try:
            return await call_next(request)
        except AppError as exc:
            return Response(503, body=f"caught: {exc}")


def test_a_plugin_can_catch_the_app_exception_from_call_next(serve, caplog):
    r, health, reached_server, raised, calls = _serve_raising_app(serve, [Catching()])
    assert (r.status_code, r.text) == (503, "caught: the app broke")
    assert reached_server == []
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]
    assert health["plugins"]["catching"]["errors"] == 0


def test_app_exception_mid_stream_passes_through_after_the_start(serve):
    reached_server: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise AppError("mid-stream")

    pipeline = wrap(app, manager_with(Passthrough()))

    async def server_side(scope, receive, send):
        try:
            await pipeline(scope, receive, send)
        except BaseException as exc:
            reached_server.append(type(exc))
            raise

    with serve(server_side) as s:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(s.url + "/")
    assert reached_server == [AppError]
