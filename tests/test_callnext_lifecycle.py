"""The downstream app's coroutine always ends inside the event loop, before its call_next layer returns.

Through a real uvicorn: a plugin that replaces the app's response (alone, or with call_next layers
inside and outside it), a plugin that fails after call_next, and a server whose send raises. The
app's ``finally`` block records where it ran; a GC-run finaliser has no running loop, and a
coroutine dropped unfinished would show up as an unraisable exception (the suite turns warnings
into errors) or as a missing event.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from covet_pipe import MiddlewarePlugin, Response, wrap
from tests._helpers import WAIT, http_scope
from tests.test_callnext import Hooked, Passthrough, manager_with


class Replace(MiddlewarePlugin):
    """Calls the app, looks at its response, and answers with its own."""

    name = "replace"
    version = "1.0.0"
    priority = 500

    async def process_request(self, request, call_next):
        response = await call_next(request)
        return Response(403, {"x-app-status": str(response.status)}, b"replaced")


class FailAfter(MiddlewarePlugin):
    name = "fail_after"
    version = "1.0.0"
    priority = 500

    async def process_request(self, request, call_next):
        await call_next(request)
        raise RuntimeError("plugin broke after call_next")


class Inner(Passthrough):
    name = "inner"
    priority = 900


class Outer(Passthrough):
    name = "outer"
    priority = 100


class Recorder:
    """An ASGI app that streams a body in three sends and records how its coroutine ended."""

    def __init__(self) -> None:
        self.events: list = []
        self.done = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
            self.events.append(("sent", await send({"type": "http.response.body", "body": b"a", "more_body": True})))
            await asyncio.sleep(0.01)                  # a real wait after the response was dropped
            self.events.append(("received", (await receive())["type"]))
            await send({"type": "http.response.body", "body": b"b", "more_body": False})
            self.events.append("end")
        except BaseException as exc:
            self.events.append(("raised", type(exc).__name__))
            raise
        finally:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None                            # a finaliser run by the GC, outside any loop
            self.events.append(("finally", loop is not None and asyncio.current_task() is not None))
            self.done.set()


def observed(pipeline, events: list):
    """What uvicorn runs: the pipeline, noting when it returns (after the app's end, or not)."""

    async def server_side(scope, receive, send):
        if scope["type"] != "http":
            await pipeline(scope, receive, send)
            return
        try:
            await pipeline(scope, receive, send)
        except BaseException as exc:
            events.append(("pipeline raised", type(exc).__name__))
            raise
        events.append("pipeline returned")

    return server_side


@pytest.fixture
def unraisable():
    """Unraisable exceptions seen while the test ran (and at a GC afterwards)."""
    seen: list = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: seen.append(f"{u.exc_type.__name__}: {u.exc_value} in {u.object!r}")
    try:
        yield seen
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert seen == []


CHAINS = {
    "replace": lambda: [Replace()],
    "replace+inner-call_next": lambda: [Replace(), Inner()],
    "outer-call_next+replace": lambda: [Outer(), Replace()],
    "outer+replace+inner": lambda: [Outer(), Replace(), Inner()],
    "hook+replace+inner": lambda: [Hooked(), Replace(), Inner()],
}


@pytest.mark.parametrize("make_chain", list(CHAINS.values()), ids=list(CHAINS))
def test_a_replaced_response_lets_the_app_run_to_its_end_inside_the_loop(serve, make_chain, unraisable):
    app = Recorder()
    events = app.events
    with serve(observed(wrap(app, manager_with(*make_chain())), events)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        assert app.done.wait(WAIT)
    assert (r.status_code, r.content, r.headers["x-app-status"]) == (403, b"replaced", "200")
    assert "x-app" not in r.headers
    # its sends after the replacement are no-ops, its receive says the client left, it ran to its end
    # inside the loop, and only then did the layer (and the pipeline) return
    assert events == [("sent", None), ("received", "http.disconnect"), "end", ("finally", True),
                      "pipeline returned"]


def test_a_plugin_failing_after_call_next_answers_500_and_the_app_still_ends_in_the_loop(serve, unraisable):
    app = Recorder()
    events = app.events
    manager = manager_with(FailAfter(), Inner())
    with serve(observed(wrap(app, manager), events)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        assert app.done.wait(WAIT)
        health = asyncio.run_coroutine_threadsafe(manager.get_health_status(), s.loop).result(WAIT)
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    assert events == [("sent", None), ("received", "http.disconnect"), "end", ("finally", True),
                      "pipeline returned"]
    assert health["plugins"]["fail_after"]["errors"] == 1
    assert health["plugins"]["inner"]["errors"] == 0


@pytest.mark.parametrize("chain", ["call_next", "call_next*2"])
def test_a_raising_server_send_reaches_the_app_which_ends_in_the_loop(serve, chain, unraisable):
    app = Recorder()
    events = app.events
    pipeline = wrap(app, manager_with(*([Passthrough()] if chain == "call_next" else [Outer(), Inner()])))

    async def server_side(scope, receive, send):
        async def broken_send(message):
            if message["type"] == "http.response.start":
                raise OSError("the connection broke")
            await send(message)

        if scope["type"] != "http":
            await pipeline(scope, receive, send)
            return
        try:
            await pipeline(scope, receive, broken_send)
        except OSError:
            events.append("pipeline raised OSError")
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"server"})

    with serve(server_side) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        assert app.done.wait(WAIT)
    assert (r.status_code, r.content) == (502, b"server")
    # the app saw its own send raise (as it would with no plugin), and ended before the pipeline did
    assert events == [("raised", "OSError"), ("finally", True), "pipeline raised OSError"]


class SlowDiscard(MiddlewarePlugin):
    """Waits on the loop between call_next and its own answer, while the app streams from a task."""

    name = "slow_discard"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        await asyncio.sleep(0.01)
        return Response(response.status + 1, body=b"mine")


def test_an_app_streaming_from_another_task_is_answered_and_ends_when_its_response_is_replaced(serve, unraisable):
    ended = threading.Event()
    events: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return

        async def stream():
            try:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                for i in range(3):
                    events.append(("sent", await send({"type": "http.response.body", "body": b"x",
                                                      "more_body": True})))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                events.append("stream finally")

        try:
            await asyncio.create_task(stream())
        finally:
            events.append(("app finally", asyncio.current_task() is not None))
            ended.set()

    with serve(observed(wrap(app, manager_with(SlowDiscard())), events)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        assert ended.wait(WAIT)
    assert (r.status_code, r.content) == (201, b"mine")
    assert events == [("sent", None)] * 3 + ["stream finally", ("app finally", True), "pipeline returned"]


@pytest.mark.parametrize("chain", ["call_next", "call_next*2", "hook+call_next"])
async def test_a_cancelled_request_cancels_the_app_where_it_waits_and_ends_it_in_the_task(chain, unraisable):
    events: list = []
    waiting = asyncio.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            waiting.set()
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("app cancelled")
            raise
        finally:
            events.append(("finally", asyncio.current_task() is not None))

    plugins = {"call_next": [Passthrough()], "call_next*2": [Outer(), Inner()],
               "hook+call_next": [Hooked(), Passthrough()]}[chain]
    manager = manager_with(*plugins)
    await manager.initialize_all()
    sent: list = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message["type"])

    task = asyncio.create_task(wrap(app, manager)(http_scope(), receive, send))
    await asyncio.wait_for(waiting.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["app cancelled", ("finally", True)]
    assert sent == ["http.response.start"]
    await manager.shutdown_all()


class CancelsCallNext(MiddlewarePlugin):
    """Gives the app 10 ms to answer (asyncio.wait_for runs call_next in a task of its own)."""

    name = "cancels_call_next"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        try:
            return await asyncio.wait_for(call_next(request), 0.01)
        except asyncio.TimeoutError:
            return Response(504, body=b"the app took too long")


def test_call_next_under_wait_for_times_out_and_the_app_ends_cancelled(serve, unraisable):
    events: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("app cancelled")
            raise
        finally:
            events.append(("finally", asyncio.current_task() is not None))

    with serve(observed(wrap(app, manager_with(CancelsCallNext())), events)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.content) == (504, b"the app took too long")
    assert events == ["app cancelled", ("finally", True), "pipeline returned"]


class Upper(MiddlewarePlugin):
    """Reads the app's body through body_iterator and answers with it upper-cased."""

    name = "upper"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        body = b"".join([chunk async for chunk in response.body_iterator])
        return Response(response.status, {"x-app": response.headers.get("x-app", "")}, body.upper())


def test_an_app_whose_body_was_read_runs_its_background_task_to_the_end_after_the_answer(serve, unraisable):
    events: list = []
    finished = threading.Event()

    async def background():
        await asyncio.sleep(0.01)                      # a real wait, after the response went out
        events.append(("background", asyncio.current_task() is not None))
        finished.set()

    async def endpoint(request):
        return PlainTextResponse("quiet", headers={"x-app": "1"}, background=BackgroundTask(background))

    app = Starlette(routes=[Route("/", endpoint)])
    with serve(observed(wrap(app, manager_with(Upper())), events)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        assert finished.wait(WAIT)
    assert (r.status_code, r.content, r.headers["x-app"]) == (200, b"QUIET", "1")
    assert events == [("background", True), "pipeline returned"]
