"""WebSockets through the pipeline, served by a real uvicorn, driven by the `websockets` client."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, wrap
from tests._helpers import WAIT, http_scope, lifespan

async def ws_echo_app(scope, receive, send):
    """Echoes text frames with a prefix; answers HTTP with 200 'http'."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"http"})
        return
    assert (await receive())["type"] == "websocket.connect"
    seen = dict(scope["headers"]).get(b"x-ws-seen", b"-").decode()
    await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": f"{seen}:{message['text']}"})


class Guard(MiddlewarePlugin):
    """Sees websockets; refuses handshakes without a token; marks those it lets through."""

    name = "ws_guard"
    version = "1.0.0"
    protocols = {"http", "websocket"}

    def __init__(self) -> None:
        self.seen: list = []

    def process_request(self, request, ctx):
        self.seen.append(ctx.protocol)
        if ctx.protocol == "websocket" and request.headers.get("x-token") != "let-me-in":
            return MiddlewareAction.reject(401, "token needed")
        request.headers.set("x-ws-seen", "guard")

    def process_response(self, response, ctx):
        response.headers.add("x-guard", f"{ctx.protocol}:{response.status}")


class AsyncGuard(Guard):
    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        return Guard.process_request(self, request, ctx)

    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        Guard.process_response(self, response, ctx)


GUARDS = [Guard, AsyncGuard]


@pytest.mark.parametrize("guard", GUARDS, ids=["sync", "async"])
def test_websocket_plugin_refuses_handshake_with_its_status(serve, guard):
    manager = PluginManager()
    plugin = guard()
    manager.register(plugin)
    with serve(wrap(ws_echo_app, manager)) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT):
                pass
        assert httpx.get(s.url + "/").text == "http"      # and the server still serves
    response = refused.value.response
    assert response.status_code == 401
    assert b"token needed" in response.body
    assert response.headers["x-guard"] == "websocket:401"
    assert plugin.seen == ["websocket", "http"]


@pytest.mark.parametrize("guard", GUARDS, ids=["sync", "async"])
def test_allowed_websocket_works_end_to_end_through_the_plugin(serve, guard):
    manager = PluginManager()
    manager.register(guard())
    with serve(wrap(ws_echo_app, manager)) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", additional_headers={"x-token": "let-me-in"},
                     open_timeout=WAIT) as ws:
            handshake = ws.response.headers
            ws.send("hello")
            first = ws.recv(timeout=WAIT)
            ws.send("again")
            second = ws.recv(timeout=WAIT)
    assert (first, second) == ("guard:hello", "guard:again")   # the request edit reached the app
    assert handshake["x-guard"] == "websocket:101"              # the response hook ran at the accept
    assert handshake["x-app"] == "1"


class HttpOnly(MiddlewarePlugin):
    """Default protocols: would refuse everything it saw."""

    name = "http_only"
    version = "1.0.0"

    def process_request(self, request, ctx):
        return MiddlewareAction.reject(403, "http only")

    def process_response(self, response, ctx):
        response.headers.add("x-http-only", "1")


def test_plugins_with_default_protocols_do_not_see_websockets(serve):
    manager = PluginManager()
    manager.register(HttpOnly())
    with serve(wrap(ws_echo_app, manager)) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
            assert "x-http-only" not in ws.response.headers
            ws.send("x")
            assert ws.recv(timeout=WAIT) == "-:x"
        assert httpx.get(s.url + "/").status_code == 403
    stats = manager.list_plugins()[0]["stats"]
    assert (stats["calls"], stats["short_circuits"]) == (1, 1)


class BodyAndSockets(MiddlewarePlugin):
    """needs_body and websockets: a websocket has no request body to read."""

    name = "body_and_sockets"
    version = "1.0.0"
    protocols = {"http", "websocket"}
    needs_body = True

    def __init__(self) -> None:
        self.bodies: list = []

    def process_request(self, request, ctx):
        self.bodies.append((ctx.protocol, request.body))


def test_needs_body_plugin_does_not_stall_a_websocket_handshake(serve):
    manager = PluginManager()
    plugin = BodyAndSockets()
    manager.register(plugin)
    with serve(wrap(ws_echo_app, manager)) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
            ws.send("x")
            assert ws.recv(timeout=WAIT) == "-:x"
        assert httpx.post(s.url + "/", content=b"abc").text == "http"
    assert plugin.bodies == [("websocket", None), ("http", b"abc")]


class FailsOnAccept(MiddlewarePlugin):
    name = "fails_on_accept"
    version = "1.0.0"
    protocols = {"websocket"}

    def process_response(self, response, ctx):
        raise RuntimeError("broken")


def test_websocket_response_hook_failure_refuses_the_handshake_and_server_lives(serve):
    manager = PluginManager()
    manager.register(FailsOnAccept())
    with serve(wrap(ws_echo_app, manager)) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT):
                pass
        assert httpx.get(s.url + "/").text == "http"
    assert refused.value.response.status_code >= 400
    assert b"broken" not in refused.value.response.body


async def test_websocket_refusal_without_the_http_response_extension_closes_with_1008():
    manager = PluginManager()
    manager.register(Guard())
    await manager.initialize_all()
    scope = http_scope("/ws", scope_type="websocket")
    del scope["method"]
    sent: list = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    await wrap(ws_echo_app, manager)(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]
