"""call_next plugins that list "websocket": call_next returns the app's answer to the handshake.

Through a real uvicorn and the `websockets` client: the plugin passes the accept (with its edits),
refuses the handshake before or after calling call_next, sees the app refuse it; a call_next
plugin that lists another protocol is refused at registration.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from covet_pipe import MiddlewarePlugin, PluginManager, PluginValidationError, Response, wrap
from tests._helpers import WAIT
from tests.test_websocket import ws_echo_app


class WsGate(MiddlewarePlugin):
    """Lets a handshake through with a header on the accept; refuses it on /deny (before the app)
    and on /late (after the app accepted)."""

    name = "ws_gate"
    version = "1.0.0"
    protocols = {"http", "websocket"}

    def __init__(self) -> None:
        self.seen: list = []

    async def process_request(self, request, call_next):
        if request.path == "/deny":
            return Response(401, {"x-gate": "denied"}, b"no token")
        request.headers.set("x-ws-seen", "gate")
        response = await call_next(request)
        self.seen.append((request.type, response.status))
        if request.path == "/late":
            return Response(409, body=b"too late")
        response.headers.add("x-gate", str(response.status))
        return response


def _manager(*plugins) -> PluginManager:
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    return manager


def test_call_next_passes_the_accept_and_the_session_runs_through(serve):
    gate = WsGate()
    with serve(wrap(ws_echo_app, _manager(gate))) as s:
        with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
            handshake = ws.response.headers
            ws.send("one")
            first = ws.recv(timeout=WAIT)
            ws.send("two")
            second = ws.recv(timeout=WAIT)
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (first, second) == ("gate:one", "gate:two")       # the request edit reached the app
    assert (handshake["x-gate"], handshake["x-app"]) == ("101", "1")
    assert (r.text, r.headers["x-gate"]) == ("http", "200")
    assert gate.seen == [("websocket", 101), ("http", 200)]


def test_a_response_returned_without_call_next_refuses_the_handshake_with_its_status(serve):
    with serve(wrap(ws_echo_app, _manager(WsGate()))) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/deny", open_timeout=WAIT):
                pass
    response = refused.value.response
    assert (response.status_code, response.body, response.headers["x-gate"]) == (401, b"no token", "denied")


def test_refusing_after_the_app_accepted_lets_the_app_end_inside_the_loop(serve):
    ended = threading.Event()
    events: list = []

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        try:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            events.append(("sent", await send({"type": "websocket.send", "text": "hello"})))
            events.append(("received", (await receive())["type"]))
        finally:
            events.append(("finally", asyncio.current_task() is not None))
            ended.set()

    with serve(wrap(app, _manager(WsGate()))) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/late", open_timeout=WAIT):
                pass
        assert ended.wait(WAIT)
    assert (refused.value.response.status_code, refused.value.response.body) == (409, b"too late")
    assert events == [("sent", None), ("received", "websocket.disconnect"), ("finally", True)]


def test_the_apps_own_refusal_reaches_the_client_through_call_next(serve):
    gate = WsGate()

    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    with serve(wrap(app, _manager(gate))) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT):
                pass
    assert refused.value.response.status_code == 403
    assert gate.seen == [("websocket", 403)]


def test_an_app_raising_before_the_accept_is_refused_with_a_500(serve):
    async def app(scope, receive, send):
        if scope["type"] == "websocket":
            raise RuntimeError("the app broke")

    with serve(wrap(app, _manager(WsGate()))) as s:
        with pytest.raises(InvalidStatus) as refused:
            with connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT):
                pass
    assert refused.value.response.status_code == 500
    assert b"the app broke" not in refused.value.response.body


def test_a_call_next_plugin_listing_another_protocol_is_refused_at_registration():
    class Everywhere(MiddlewarePlugin):
        name = "everywhere"
        version = "1.0.0"
        protocols = {"http", "resp"}

        async def process_request(self, request, call_next):
            return await call_next(request)

    with pytest.raises(PluginValidationError) as refused:
        PluginManager().register(Everywhere())
    assert "plugin 'everywhere'" in str(refused.value)
    assert "'resp'" in str(refused.value) and "hook style" in str(refused.value)
