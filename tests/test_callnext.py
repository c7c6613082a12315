"""The call_next style through a real uvicorn, against Starlette BaseHTTPMiddleware's bug list.

Each test names the bug it guards against (DESIGN.md, "The call_next style without Starlette's
bugs"): contextvars, background tasks, streaming, request bodies, http.disconnect, Set-Cookie,
Content-Length, websockets and lifespan (exceptions: test_callnext_errors.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from websockets.sync.client import connect as ws_connect

from covet_pipe import MiddlewarePlugin, PluginManager, Response, wrap
from tests._helpers import WAIT, StreamProbe, read_stream

plugin_var: contextvars.ContextVar[str] = contextvars.ContextVar("plugin_var", default="unset")
app_var: contextvars.ContextVar[str] = contextvars.ContextVar("app_var", default="unset")


class Passthrough(MiddlewarePlugin):
    """The seed's call_next plugin: logs, calls the rest, returns its response."""

    name = "passthrough"
    version = "1.0.0"

    def __init__(self) -> None:
        self.log: list = []
        self.finished = threading.Event()

    async def process_request(self, request, call_next):
        self.log.append("before")
        response = await call_next(request)
        self.log.append("after")
        self.finished.set()
        return response


class Hooked(MiddlewarePlugin):
    """A hook-style plugin, for chains that mix both styles."""

    name = "hooked"
    version = "1.0.0"
    priority = 10

    def process_request(self, request, ctx):
        request.headers.add("x-hooked", "1")

    def process_response(self, response, ctx):
        response.headers.add("x-hooked", "1")


def manager_with(*plugins) -> PluginManager:
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    return manager


async def _text(send, status: int, body: bytes, headers=()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


# -- contextvars ---------------------------------------------------------------------------------

class ContextPlugin(MiddlewarePlugin):
    name = "context_plugin"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        plugin_var.set("set-by-plugin")
        response = await call_next(request)
        response.headers["x-plugin-saw"] = app_var.get()
        return response


async def raw_context_app(scope, receive, send):
    if scope["type"] != "http":
        return
    app_var.set("set-by-app")
    await asyncio.sleep(0.01)          # really suspend in between
    await _text(send, 200, plugin_var.get().encode())


async def _starlette_context_endpoint(request):
    app_var.set("set-by-app")
    await asyncio.sleep(0.01)
    return PlainTextResponse(plugin_var.get())

starlette_context_app = Starlette(routes=[Route("/", _starlette_context_endpoint)])


@pytest.mark.parametrize("app", [raw_context_app, starlette_context_app], ids=["asgi", "starlette"])
def test_contextvars_propagate_both_ways_between_call_next_plugin_and_app(serve, app):
    with serve(wrap(app, manager_with(ContextPlugin()))) as s:
        r = httpx.get(s.url + "/")
    assert r.status_code == 200
    assert r.text == "set-by-plugin"                 # plugin -> app
    assert r.headers["x-plugin-saw"] == "set-by-app"  # app -> plugin, after call_next


# -- background tasks ----------------------------------------------------------------------------

def test_background_task_runs_after_the_response_and_is_not_cancelled(serve):
    release = threading.Event()
    state = {"started": False, "finished": False, "released": None}
    finished = threading.Event()

    async def background():
        state["started"] = True
        # waits until the client has the whole response: a delayed response would never release it
        state["released"] = await asyncio.to_thread(release.wait, WAIT)
        await asyncio.sleep(0)
        state["finished"] = True
        finished.set()

    async def endpoint(request):
        return PlainTextResponse("done", background=BackgroundTask(background))

    app = Starlette(routes=[Route("/", endpoint)])
    plugin = Passthrough()
    with serve(wrap(app, manager_with(plugin))) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        got_response_before_background_finished = not state["finished"]
        release.set()
        assert finished.wait(WAIT), "the background task did not finish (cancelled?)"
    assert (r.status_code, r.text) == (200, "done")
    assert got_response_before_background_finished
    assert state == {"started": True, "finished": True, "released": True}
    assert plugin.log == ["before", "after"]


# -- streaming -----------------------------------------------------------------------------------

STREAM_APPS = {
    "asgi-same-task": lambda p: p.raw_app(child_task=False),
    "asgi-child-task": lambda p: p.raw_app(child_task=True),
    "starlette-spec2.3-child-task": lambda p: p.starlette_app(None),   # uvicorn says 2.3: a task group
    "starlette-spec2.4-same-task": lambda p: p.starlette_app("2.4"),
}


@pytest.mark.parametrize("plugins", ["call_next", "hook+call_next", "call_next*2"])
@pytest.mark.parametrize("make_app", list(STREAM_APPS.values()), ids=list(STREAM_APPS))
def test_streaming_response_streams_through_call_next_in_order(serve, make_app, plugins):
    probe = StreamProbe()
    chain = {"call_next": [Passthrough()], "hook+call_next": [Hooked(), Passthrough()],
             "call_next*2": [Passthrough(), ContextPlugin()]}[plugins]
    with serve(wrap(make_app(probe), manager_with(*chain))) as s:
        status, headers, first, rest = read_stream(s.url + "/", probe)
    assert status == 200
    assert first == b"one,"
    assert first + rest == b"one,two,three"
    assert probe.waited is True, "the app's second chunk never saw the client get the first (buffered?)"
    assert headers["x-app"] == "1"
    assert "content-length" not in headers


class Collect(MiddlewarePlugin):
    """Reads the whole body through body_iterator and answers with it and the chunk count."""

    name = "collect"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        chunks = [chunk async for chunk in response.body_iterator]
        return Response(response.status, {"x-chunks": str(len(chunks))}, b"".join(chunks))


@pytest.mark.parametrize("make_app", list(STREAM_APPS.values()), ids=list(STREAM_APPS))
def test_body_iterator_reads_a_stream_sent_from_the_app_task_or_another(serve, make_app):
    probe = StreamProbe()
    probe.client_has_first.set()          # the plugin, not the client, reads the first chunk
    with serve(wrap(make_app(probe), manager_with(Collect()))) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.content, r.headers["x-chunks"]) == (200, b"one,two,three", "3")


# -- request bodies ------------------------------------------------------------------------------

class BodyPeek(MiddlewarePlugin):
    name = "body_peek"
    version = "1.0.0"
    needs_body = True

    async def process_request(self, request, call_next):
        response = await call_next(request)
        response.headers["x-plugin-read"] = str(len(request.body))
        return response


def test_request_body_read_by_call_next_plugin_is_replayed_to_starlette_app(serve):
    async def endpoint(request: StarletteRequest):
        data = await request.json()
        return PlainTextResponse(f"{len(await request.body())}:{data['k']}")

    app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])
    payload = json.dumps({"k": "v" * 100_000}).encode()
    with serve(wrap(app, manager_with(BodyPeek()))) as s:
        r = httpx.post(s.url + "/", content=payload)
    assert r.status_code == 200
    assert r.text == f"{len(payload)}:{'v' * 100_000}"
    assert r.headers["x-plugin-read"] == str(len(payload))


# -- http.disconnect -----------------------------------------------------------------------------

def test_http_disconnect_reaches_the_app_and_call_next_does_not_fail(serve, caplog):
    waiting = threading.Event()
    done = threading.Event()
    seen: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        seen.append((await receive())["type"])     # the (empty) request body
        waiting.set()
        seen.append((await receive())["type"])     # blocks until the client goes away
        done.set()                                  # and returns without a response

    plugin = Passthrough()
    manager = manager_with(plugin)
    with serve(wrap(app, manager)) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert waiting.wait(WAIT)
        assert done.wait(WAIT), "the app never saw http.disconnect"
        # the plugin finished normally: no "No response returned" error
        assert plugin.finished.wait(WAIT)
    assert seen == ["http.request", "http.disconnect"]
    assert plugin.log == ["before", "after"]
    # the app saw the client leave: that it sent no response is no news worth a warning
    assert not [r for r in caplog.records if "without sending a response" in r.getMessage()]
    assert asyncio.run(manager.get_health_status())["plugins"]["passthrough"]["errors"] == 0


# -- headers -------------------------------------------------------------------------------------

class CookieAdder(MiddlewarePlugin):
    name = "cookie_adder"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        response.headers.add("set-cookie", "plugin=3; Path=/")
        return response


class HookCookieAdder(MiddlewarePlugin):
    name = "cookie_adder"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.add("set-cookie", "plugin=3; Path=/")


@pytest.mark.parametrize("adder", [HookCookieAdder, CookieAdder], ids=["hook", "call_next"])
def test_multiple_set_cookie_headers_are_all_kept(serve, adder):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await _text(send, 200, b"ok", [(b"set-cookie", b"a=1; Path=/"), (b"set-cookie", b"b=2; Path=/")])

    with serve(wrap(app, manager_with(adder(), Passthrough()))) as s:
        r = httpx.get(s.url + "/")
    assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/", "plugin=3; Path=/"]


def test_call_next_plugin_rewriting_the_body_gets_a_right_content_length(serve):
    class Shout(MiddlewarePlugin):
        name = "shout"
        version = "1.0.0"

        async def process_request(self, request, call_next):
            response = await call_next(request)
            body = b"".join([chunk async for chunk in response.body_iterator])
            headers = [(k, v) for k, v in response.headers.items() if k != "content-length"]
            return Response(response.status, headers, body.upper() + b"!!!")

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await _text(send, 201, b"quiet words", [(b"x-app", b"1")])

    with serve(wrap(app, manager_with(Shout()))) as s:
        r = httpx.get(s.url + "/")
    assert (r.status_code, r.content) == (201, b"QUIET WORDS!!!")
    assert r.headers["content-length"] == "14"
    assert r.headers["x-app"] == "1"


# -- websockets and lifespan ---------------------------------------------------------------------

class EverywhereCallNext(Passthrough):
    """A call_next plugin that says it wants websockets too: call_next wraps the handshake as well."""

    name = "everywhere"
    protocols = {"http", "websocket"}


@pytest.mark.parametrize("plugin", [Passthrough, EverywhereCallNext], ids=["http-only", "http+websocket"])
def test_websocket_and_lifespan_work_with_a_call_next_plugin(serve, plugin):
    events: list = []

    async def on_startup():
        events.append("startup")

    async def on_shutdown():
        events.append("shutdown")

    async def echo(websocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"echo:{text}")
        await websocket.close()

    async def home(request):
        return PlainTextResponse("home")

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        await on_startup()
        yield
        await on_shutdown()

    app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws", echo)], lifespan=lifespan)
    instance = plugin()
    manager = manager_with(instance)
    with serve(wrap(app, manager)) as s:
        assert events == ["startup"]
        with ws_connect(f"ws://127.0.0.1:{s.port}/ws", open_timeout=WAIT) as ws:
            ws.send("hi")
            assert ws.recv(timeout=WAIT) == "echo:hi"
        assert httpx.get(s.url + "/").text == "home"
        assert manager.list_plugins()[0]["state"] == "active"
    assert events == ["startup", "shutdown"]
    # the HTTP request, and the websocket's handshake when the plugin lists "websocket"
    assert instance.log == ["before", "after"] * (2 if "websocket" in instance.protocols else 1)
    assert manager.list_plugins()[0]["state"] == "stopped"
