"""What a call_next layer puts on the wire, through a real uvicorn: messages before the response start.

uvicorn implements neither server push, the debug extension nor trailers, so where a test needs them
a thin shim in front of uvicorn's send advertises the extension, records every message the pipeline
sends, and passes the others on to uvicorn, which serves the response.
"""

from __future__ import annotations

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, wrap
from tests._helpers import WAIT
from tests.test_callnext import Hooked, Passthrough, manager_with

EXTENSIONS = ("http.response.push", "http.response.debug", "http.response.trailers")
#: messages the shim keeps from uvicorn (it would refuse them)
SHIM_ONLY = {"http.response.push", "http.response.debug", "http.response.trailers", "x.example.hint"}


class Shim:
    """What uvicorn runs: the pipeline, with the extensions uvicorn lacks served in front of its send."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.pipeline(scope, receive, send)
            return
        scope = dict(scope, extensions={**scope.get("extensions", {}), **{e: {} for e in EXTENSIONS}})

        async def shim_send(message):
            self.seen.append(message)
            if message["type"] in SHIM_ONLY:
                return
            if message["type"] == "http.response.start":
                message = {k: v for k, v in message.items() if k != "trailers"}
            await send(message)

        await self.pipeline(scope, receive, shim_send)


class Inner(Passthrough):
    name = "inner"
    priority = 900


class HookAfter(Hooked):
    name = "hook_after"
    priority = 950


class EditHeaders(MiddlewarePlugin):
    name = "edit_headers"
    version = "1.0.0"
    priority = 400

    async def process_request(self, request, call_next):
        response = await call_next(request)
        response.headers.add("x-edited", "1")
        return response


CHAINS = {
    "call_next": lambda: [Passthrough()],
    "call_next-editing": lambda: [EditHeaders()],
    "hook+call_next": lambda: [Hooked(), Passthrough()],
    "call_next+hook": lambda: [Passthrough(), HookAfter()],
    "call_next*2": lambda: [Passthrough(), Inner()],
}


@pytest.mark.parametrize("make_chain", list(CHAINS.values()), ids=list(CHAINS))
def test_messages_before_the_start_reach_the_server_untouched_and_in_order(serve, make_chain):
    sent: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        ext = scope.get("extensions", {})
        sent.append({"type": "http.response.push", "path": "/style.css", "headers": [(b"accept", b"text/css")]})
        sent.append({"type": "http.response.debug", "info": {"template": "page.html", "context": {"k": 1}}})
        sent.append({"type": "x.example.hint", "value": 103})
        assert "http.response.push" in ext and "http.response.debug" in ext
        for message in sent:
            await send(message)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    shim = Shim(wrap(app, manager_with(*make_chain())))
    with serve(shim) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.content) == (200, b"ok")
    assert [m["type"] for m in shim.seen] == ["http.response.push", "http.response.debug", "x.example.hint",
                                              "http.response.start", "http.response.body"]
    assert all(a is b for a, b in zip(shim.seen[:3], sent))      # the app's own messages, unchanged
