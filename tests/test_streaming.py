"""Streaming responses through hook-style plugins, served by a real uvicorn."""

from __future__ import annotations

import asyncio
import hashlib
import os

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from tests._helpers import WAIT, StreamProbe, read_stream


class SyncStamp(MiddlewarePlugin):
    """Request and response hooks; the response hook edits status and headers."""

    version = "1.0.0"

    def __init__(self, name: str = "stamp", priority: int = 1000, status: int | None = None) -> None:
        self.name = name
        self.priority = priority
        self.status = status
        self.bodies: list = []

    def process_request(self, request, ctx):
        ctx.state["path"] = request.path

    def process_response(self, response, ctx):
        self.bodies.append(response.body)
        if self.status is not None:
            response.status = self.status
        response.headers.remove("x-app")
        response.headers.add("x-stamp", f"{self.name}:{ctx.state['path']}")


class AsyncStamp(SyncStamp):
    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        SyncStamp.process_request(self, request, ctx)

    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        SyncStamp.process_response(self, response, ctx)


class NeedsBody(MiddlewarePlugin):
    name = "needs_body"
    version = "1.0.0"
    needs_body = True

    def process_request(self, request, ctx):
        assert request.body == b""


STAMPS = [SyncStamp, AsyncStamp]


@pytest.mark.parametrize("app_kind", ["asgi-same-task", "asgi-child-task", "starlette"])
@pytest.mark.parametrize("stamp", STAMPS, ids=["sync", "async"])
def test_streamed_chunks_arrive_as_chunks_through_hook_plugins(serve, stamp, app_kind):
    probe = StreamProbe()
    app = {"asgi-same-task": lambda: probe.raw_app(child_task=False),
           "asgi-child-task": lambda: probe.raw_app(child_task=True),
           "starlette": lambda: probe.starlette_app(None)}[app_kind]()
    manager = PluginManager()
    plugin = stamp("outer", 10)
    manager.register(plugin)
    manager.register(stamp("inner", 20))
    manager.register(NeedsBody())
    with serve(wrap(app, manager)) as s:
        status, headers, first, rest = read_stream(s.url + "/", probe)
    assert status == 200
    assert first == b"one,"
    assert first + rest == b"one,two,three"
    assert probe.waited is True, "the app's second chunk never saw the client get the first (buffered?)"
    assert plugin.bodies == [None]      # a response hook never holds a streaming body


@pytest.mark.parametrize("stamp", STAMPS, ids=["sync", "async"])
def test_response_hooks_change_status_and_headers_of_a_streamed_response(serve, stamp):
    probe = StreamProbe()
    manager = PluginManager()
    manager.register(stamp("outer", 10, status=203))
    manager.register(stamp("inner", 20, status=299))
    with serve(wrap(probe.raw_app(child_task=False), manager)) as s:
        status, headers, first, rest = read_stream(s.url + "/edit", probe)
        with httpx.Client(timeout=WAIT) as client:
            raw = client.get(s.url + "/edit2").headers.raw
    assert status == 203                             # the outer hook ran last
    assert "x-app" not in headers
    assert [v.decode() for k, v in raw if k.lower() == b"x-stamp"] == ["inner:/edit2", "outer:/edit2"]
    assert headers["content-type"] == "text/plain"
    assert first + rest == b"one,two,three"
    assert probe.waited is True


def test_streamed_bytes_pass_through_unchanged(serve):
    blob = os.urandom(300_000)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(0, len(blob), 7_001):
            await send({"type": "http.response.body", "body": blob[i:i + 7_001], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    manager = PluginManager()
    manager.register(SyncStamp("one", 1))
    manager.register(AsyncStamp("two", 2))
    with serve(wrap(app, manager)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(blob).hexdigest()
    assert r.headers["transfer-encoding"] == "chunked"


class FailAtStart(MiddlewarePlugin):
    name = "fail_at_start"
    version = "1.0.0"

    def process_response(self, response, ctx):
        if ctx.request.path == "/fail":
            raise RuntimeError("hook broke")


def test_response_hook_failure_on_a_stream_answers_a_clean_500_and_the_connection_lives(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        for chunk in (b"secret-1", b"secret-2"):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    manager = PluginManager()
    manager.register(FailAtStart())
    with serve(wrap(app, manager)) as s:
        with httpx.Client(base_url=s.url, timeout=WAIT) as client:
            failed = client.get("/fail")
            fine = client.get("/fine")                 # same keep-alive connection
    assert failed.status_code == 500
    assert failed.json() == {"error": "Internal Server Error"}
    assert failed.headers["content-length"] == str(len(failed.content))
    assert "x-app" not in failed.headers
    assert (fine.status_code, fine.content) == (200, b"secret-1secret-2")
