"""Issue 15, defect 3: once the response has started, its headers are read-only.

A plugin that keeps the Response it was handed and edits it after the head went out loses the edit
silently today. The edit must raise ``covet_pipe.errors.ResponseStartedError`` (a RuntimeError) naming the
plugin and the hook, so the author learns the edit came too late; reading stays allowed.

The app streams: its head and a first chunk reach the client, the test edits the kept Response on the
server's loop, then the app finishes.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from covet_pipe import MiddlewarePlugin, errors, wrap
from tests._helpers import WAIT, on_server_loop
from tests._layers import ACTOR_PRIORITY, layered, manager_with, styles
from tests._wire import parse_head, read_until_closed, request


class KeepHook(MiddlewarePlugin):
    """Edits in time (x-in-time), and keeps the Response for a late edit."""

    name = "keeper"
    version = "1.0.0"
    priority = ACTOR_PRIORITY
    hook = "process_response"

    def __init__(self) -> None:
        self.kept = None

    def process_response(self, response, ctx):
        response.headers.add("x-in-time", "1")
        self.kept = response


class KeepCallNext(MiddlewarePlugin):
    name = "keeper"
    version = "1.0.0"
    priority = ACTOR_PRIORITY
    hook = "process_request"

    def __init__(self) -> None:
        self.kept = None

    async def process_request(self, request, call_next):
        response = await call_next(request)
        response.headers.add("x-in-time", "1")
        self.kept = response
        return response


def streaming_app(release: threading.Event):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        await asyncio.to_thread(release.wait, WAIT)
        await send({"type": "http.response.body", "body": b"last"})
    return app


EDITS = {
    "add": lambda h: h.add("x-late", "1"),
    "set": lambda h: h.set("content-type", "text/html"),
    "setitem": lambda h: h.__setitem__("x-late", "1"),
    "remove": lambda h: h.remove("content-type"),
    "delitem": lambda h: h.__delitem__("content-type"),
    "setdefault": lambda h: h.setdefault("x-late", "1"),
}


async def _late_edits(response) -> dict:
    """Try each edit on the started response; what each raised (None: it was taken)."""
    out: dict = {"read": response.headers.get("content-type")}
    for name, edit in EDITS.items():
        try:
            edit(response.headers)
            out[name] = None
        except Exception as exc:       # noqa: BLE001 - the test reports what was raised
            out[name] = exc
    try:
        response.headers = [("x-late", "1")]
        out["replace"] = None
    except Exception as exc:           # noqa: BLE001
        out["replace"] = exc
    return out


@pytest.mark.parametrize("style", styles())
def test_header_edit_after_the_start_raises_response_started_error_naming_plugin_and_hook(serve, style):
    release = threading.Event()
    plugins = layered(style, KeepHook, KeepCallNext)
    actor = next(p for p in plugins if p.name == "keeper")
    with serve(wrap(streaming_app(release), manager_with(*plugins))) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(request("GET", "/", close=True))
            data = b""
            while b"first," not in data:
                chunk = sock.recv(65536)
                assert chunk, "the server closed before the first chunk"
                data += chunk
            try:
                outcome = on_server_loop(s, _late_edits(actor.kept))
            finally:
                release.set()
            data, closed = read_until_closed(sock, data)
    head, rest = parse_head(data)
    assert head.get("x-in-time") == "1"           # edits in the hook reach the client
    assert "x-late" not in head.names()
    assert rest.endswith(b"0\r\n\r\n") and closed   # the response itself finished normally
    assert outcome.pop("read") == "text/plain"      # reading a started response stays allowed
    assert issubclass(errors.ResponseStartedError, RuntimeError)
    for name, exc in outcome.items():
        assert isinstance(exc, errors.ResponseStartedError), f"{name}: {exc!r}"
        assert "keeper" in str(exc) and actor.hook in str(exc), f"{name}: {exc}"
