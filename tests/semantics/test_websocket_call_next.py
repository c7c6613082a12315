"""Issue 15, defect 6: a call_next plugin that lists "websocket" is not skipped without a word.

Either it runs for the handshake (its ``call_next`` lets the app accept, its own Response denies), or
registering it fails with an error that names the plugin and says websockets are not wrapped. Today it
is registered and silently left out of the websocket chain.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from covet_pipe import CovetPipeError, MiddlewarePlugin, PluginManager, Response, wrap
from tests._helpers import WAIT, lifespan
from tests._layers import NoopHook


class WsCallNext(MiddlewarePlugin):
    name = "ws_call_next"
    version = "1.0.0"
    priority = 500
    protocols = {"http", "websocket"}

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def process_request(self, request, call_next):
        self.seen.append(request.scope["type"])
        if request.headers.get("x-deny"):
            return Response(403, body=b"denied")
        return await call_next(request)


async def ws_echo(scope, receive, send):
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    message = await receive()
    await send({"type": "websocket.send", "text": f"echo:{message['text']}"})
    await send({"type": "websocket.close", "code": 1000})


@pytest.mark.parametrize("front", [[], [NoopHook("ws_hook", 10, protocols=("http", "websocket"))]],
                         ids=["alone", "behind-a-hook"])
def test_call_next_plugin_listing_websocket_runs_for_the_handshake_or_is_refused(serve, front):
    plugin = WsCallNext()
    manager = PluginManager()
    for other in front:
        manager.register(other)
    try:
        manager.register(plugin)
    except CovetPipeError as exc:
        # the refusal: it names the plugin and what it cannot do
        assert "ws_call_next" in str(exc) and "websocket" in str(exc), str(exc)
        return
    with serve(wrap(ws_echo, manager)) as s:
        with ws_connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
            ws.send("hi")
            assert ws.recv(timeout=WAIT) == "echo:hi"
        with pytest.raises(InvalidStatus) as denied:
            with ws_connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT,
                            additional_headers={"x-deny": "1"}):
                pass
    assert denied.value.response.status_code == 403
    assert plugin.seen == ["websocket", "websocket"]
