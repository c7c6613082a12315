"""Body transforms (``Response.transform_body``) in response hooks, through a real uvicorn on 127.0.0.1.

A transform sees each chunk of the body in order, ``last`` on the final one, and the chunks stay
chunks: nothing is buffered unless a transform holds bytes back itself.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, Response, ResponseStartedError, wrap
from tests._helpers import WAIT, StreamProbe, read_stream


class Transforms(MiddlewarePlugin):
    """Adds the transform ``make(response)`` returns, and records its calls."""

    version = "1.0.0"

    def __init__(self, name: str, make, *, priority: int = 1000, asynchronous: bool = False) -> None:
        self.name = name
        self.make = make
        self.priority = priority
        self.calls: list[tuple[bytes, bool]] = []
        self.asynchronous = asynchronous

    def process_response(self, response, ctx):
        fn = self.make(response)

        def recorded(chunk, last):
            self.calls.append((chunk, last))
            return fn(chunk, last)

        async def recorded_async(chunk, last):
            await asyncio.sleep(0)
            return recorded(chunk, last)

        response.transform_body(recorded_async if self.asynchronous else recorded)


class AsyncHookTransforms(Transforms):
    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        Transforms.process_response(self, response, ctx)


def upper(response):
    return lambda chunk, last: chunk.upper()


def doubled(response):
    return lambda chunk, last: bytes(b for c in chunk for b in (c, c))


def bracketed(response):
    return lambda chunk, last: b"<" + chunk + (b">END" if last else b">")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/pieces":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def served(serve, *plugins, target=app):
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    return serve(wrap(target, manager)), manager


HOOKS = {"sync-hook": Transforms, "async-hook": AsyncHookTransforms}


@pytest.mark.parametrize("hook", list(HOOKS), ids=list(HOOKS))
@pytest.mark.parametrize("asynchronous", [False, True], ids=["def-transform", "async-transform"])
def test_a_transform_sees_each_chunk_in_order_and_the_length_follows(serve, hook, asynchronous):
    plugin = HOOKS[hook]("doubles", doubled, asynchronous=asynchronous)
    server, _ = served(serve, plugin)
    with server as s:
        whole = httpx.get(s.url + "/")
        pieces = httpx.get(s.url + "/pieces")
    # one body message: its transformed length is known, and sent
    assert (whole.content, whole.headers["content-length"]) == (b"hheelllloo", "10")
    assert "transfer-encoding" not in whole.headers
    # several: the app's Content-Length is dropped and the server chunks the body
    assert pieces.content == b"aabbccddeeff"
    assert pieces.headers["transfer-encoding"] == "chunked" and "content-length" not in pieces.headers
    assert plugin.calls == [(b"hello", True), (b"abc", False), (b"def", False), (b"", True)]


def test_transforms_compose_in_response_hook_order(serve):
    inner = Transforms("inner", bracketed, priority=20)
    outer = Transforms("outer", upper, priority=10)
    server, _ = served(serve, outer, inner)
    with server as s:
        r = httpx.get(s.url + "/pieces")
    assert r.content == b"<ABC><DEF><>END"          # the inner plugin's transform first, then the outer's
    assert inner.calls[-1] == (b"", True) and outer.calls[-1] == (b"<>END", True)


@pytest.mark.parametrize("app_kind", ["asgi-same-task", "asgi-child-task", "starlette"])
def test_a_transformed_stream_stays_a_stream(serve, app_kind):
    probe = StreamProbe()
    target = {"asgi-same-task": lambda: probe.raw_app(child_task=False),
              "asgi-child-task": lambda: probe.raw_app(child_task=True),
              "starlette": lambda: probe.starlette_app(None)}[app_kind]()
    server, _ = served(serve, Transforms("upper", upper), target=target)
    with server as s:
        status, headers, first, rest = read_stream(s.url + "/", probe)
    assert status == 200 and first == b"ONE,"
    assert first + rest == b"ONE,TWO,THREE"
    assert probe.waited is True, "the second chunk was made before the client had the first (buffered?)"


class Answers(MiddlewarePlugin):
    name = "answers"
    version = "1.0.0"
    priority = 2000

    def process_request(self, request, ctx):
        if request.path == "/whole":
            return MiddlewareAction.respond(Response(200, body=b"mine"))
        if request.path == "/streamed":
            async def body():
                yield b"st"
                yield b"reamed"
            return MiddlewareAction.respond(Response(200, body=body()))


def test_a_transform_works_on_a_plugins_own_answer_whole_or_streamed(serve):
    plugin = Transforms("brackets", bracketed)
    server, _ = served(serve, plugin, Answers())
    with server as s:
        whole = httpx.get(s.url + "/whole")
        streamed = httpx.get(s.url + "/streamed")
    assert (whole.content, whole.headers["content-length"]) == (b"<mine>END", "9")
    assert streamed.content == b"<st><reamed><>END" and streamed.headers["transfer-encoding"] == "chunked"


class SetsStatus(MiddlewarePlugin):
    name = "sets_status"
    version = "1.0.0"
    priority = 5000

    def process_response(self, response, ctx):
        if ctx.request.path == "/nocontent":
            response.status = 204


@pytest.mark.parametrize("method, path", [("HEAD", "/"), ("GET", "/nocontent"), ("HEAD", "/whole")])
def test_no_transform_runs_where_there_is_no_body(serve, method, path):
    plugin = Transforms("doubles", doubled)
    server, _ = served(serve, plugin, SetsStatus(), Answers())
    with server as s:
        with httpx.Client(timeout=WAIT) as client:
            r = client.request(method, s.url + path)
            assert r.content == b"" and "content-length" not in r.headers
            assert client.get(s.url + "/").content == b"hheelllloo"     # the connection is in sync
    assert plugin.calls == [(b"hello", True)]


def test_a_transforms_first_call_may_still_edit_the_headers_and_later_ones_may_not(serve):
    errors: list = []

    def make(response):
        def fn(chunk, last):
            try:
                response.headers.set("x-chunk", chunk.decode() or "-")
            except ResponseStartedError as exc:
                errors.append(exc)
            return chunk
        return fn

    server, _ = served(serve, Transforms("edits", make))
    with server as s:
        r = httpx.get(s.url + "/pieces")
    assert r.headers["x-chunk"] == "abc" and r.content == b"abcdef"
    assert len(errors) == 2
    assert str(errors[0]).startswith("plugin 'edits' body transform: the response has already started; its "
                                     "headers can no longer change \u2014 edit them in process_response, or "
                                     "in the transform's first call")


def test_adding_a_transform_after_the_start_raises(serve):
    late: list = []

    class Late(MiddlewarePlugin):
        name = "late"
        version = "1.0.0"

        def process_response(self, response, ctx):
            late.append(response)

    async def target(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            late[0].transform_body(lambda chunk, last: chunk)
        except ResponseStartedError as exc:
            late.append(exc)
        await send({"type": "http.response.body", "body": b"ok"})

    server, _ = served(serve, Late(), target=target)
    with server as s:
        assert httpx.get(s.url + "/").content == b"ok"
    assert str(late[1]) == ("plugin 'late' process_response: the response has already started; a body transform "
                            "can no longer be added \u2014 call transform_body in process_response before "
                            "returning")


def failing(at: bytes, error=ValueError):
    def make(response):
        def fn(chunk, last):
            if chunk == at:
                raise error("the codec broke\r\nERROR forged")
            return chunk
        return fn
    return make


def test_a_transform_that_fails_on_the_first_chunk_gets_the_client_a_500(serve, caplog):
    server, manager = served(serve, Transforms("breaks", failing(b"hello")))
    with server as s:
        r = httpx.get(s.url + "/")
        health = asyncio.run(manager.get_health_status())
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    (record,) = [r for r in caplog.records if "body transform" in r.getMessage()]
    assert record.name == "covet_pipe.plugins" and record.exc_info[0] is ValueError
    assert record.getMessage().startswith("plugin 'breaks' 1.0.0 raised in its body transform: ValueError: ")
    assert "\n" not in record.getMessage() and "the client got a 500" in record.getMessage()
    assert health["plugins"]["breaks"]["errors"] == 1


def test_a_transform_that_fails_after_the_start_cuts_the_response_short(serve, caplog):
    server, _ = served(serve, Transforms("breaks", failing(b"def")))
    with server as s:
        with pytest.raises(httpx.HTTPError):
            httpx.get(s.url + "/pieces", timeout=WAIT)
        assert httpx.get(s.url + "/").content == b"hello"        # the next connection is served
    messages = [r.getMessage() for r in caplog.records if "body transform" in r.getMessage()]
    assert messages and "the response was cut short" in messages[0]


def test_a_transform_that_returns_what_is_not_bytes_fails_like_one_that_raises(serve, caplog):
    server, _ = served(serve, Transforms("wrong", lambda response: (lambda chunk, last: chunk.decode())))
    with server as s:
        r = httpx.get(s.url + "/")
    assert r.status_code == 500
    assert any("a body transform returns bytes, got str" in r.getMessage() for r in caplog.records)


class Wraps(MiddlewarePlugin):
    name = "wraps"
    version = "1.0.0"
    priority = 5000

    async def process_request(self, request, call_next):
        return await call_next(request)


def test_a_hook_outside_a_call_next_plugin_transforms_what_comes_out_of_it(serve):
    server, _ = served(serve, Transforms("upper", upper, priority=10), Wraps())
    with server as s:
        assert httpx.get(s.url + "/pieces").content == b"ABCDEF"
        assert httpx.get(s.url + "/").content == b"HELLO"


def test_transform_body_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match=r"transform_body\(\) takes a callable"):
        Response(200).transform_body(b"not a function")


def test_an_app_that_raises_while_its_start_waits_for_the_transforms_gets_the_pipelines_500(serve, caplog):
    async def target(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        raise RuntimeError("the app broke after its start")

    plugin = Transforms("upper", upper)
    server, _ = served(serve, plugin, target=target)
    with server as s:
        r = httpx.get(s.url + "/")
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    assert "x-app" not in r.headers and plugin.calls == []
    (record,) = [r for r in caplog.records if r.name == "covet_pipe.app"]
    assert "the app's start was still waiting for its body" in record.getMessage()
