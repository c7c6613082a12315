"""Issue 15, streamed bodies: ``Response(body=<async iterator>)`` goes out chunk by chunk, in both styles.

The body comes from :class:`tests._helpers.StreamProbe`, whose second chunk waits until the client holds
the first: a pipeline that buffered the body would never let the client have it (``probe.waited`` False).
A call_next plugin also transforms the app's streamed body into a new streamed Response, without
buffering it. And flow control: a client that stops reading stops the iterator (32 MiB, several times
what the loopback buffers hold), as it stops an app whose every send waits for the server.
"""

from __future__ import annotations

import time

import httpx
import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Response, wrap
from tests._helpers import WAIT, StreamProbe, read_stream
from tests._layers import ACTOR_PRIORITY, NoopCallNext, calls_of, layered, manager_with, styles


async def never_app(scope, receive, send):
    raise AssertionError("the plugin answered: the app must not run")


class StreamHook(MiddlewarePlugin):
    """Answers from its request hook with a streamed body."""

    name = "streamer"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self, probe: StreamProbe) -> None:
        self.probe = probe

    def process_request(self, request, ctx):
        return MiddlewareAction.respond(Response(200, [("content-type", "text/plain")], self.probe.chunks()))

    def process_response(self, response, ctx):
        response.headers.add("x-streamer", "1")


class StreamCallNext(MiddlewarePlugin):
    """Answers with a streamed body without calling the app."""

    name = "streamer"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self, probe: StreamProbe) -> None:
        self.probe = probe

    async def process_request(self, request, call_next):
        response = Response(200, [("content-type", "text/plain")], self.probe.chunks())
        response.headers.add("x-streamer", "1")
        return response


class Upper(MiddlewarePlugin):
    """Streams the app's body back upper-cased, chunk for chunk."""

    name = "upper"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    async def process_request(self, request, call_next):
        response = await call_next(request)

        async def upper():
            async for chunk in response.body_iterator:
                yield chunk.upper()

        return Response(response.status, response.headers, upper())




@pytest.mark.parametrize("style", styles())
def test_streamed_response_made_by_a_plugin_arrives_chunk_by_chunk(serve, style):
    probe = StreamProbe()
    plugins = layered(style, lambda: StreamHook(probe), lambda: StreamCallNext(probe))
    with serve(wrap(never_app, manager_with(*plugins))) as s:
        status, headers, first, rest = read_stream(s.url + "/", probe)
    assert status == 200
    assert (first, first + rest) == (b"one,", b"one,two,three")
    assert probe.waited is True, "the body was buffered: its second chunk never saw the client hold the first"
    assert headers["x-streamer"] == "1"
    assert headers["content-type"] == "text/plain"
    assert "content-length" not in headers and headers["transfer-encoding"] == "chunked"
    # the no-op outside the actor ran both phases; the one inside it (and the app) never ran
    noops = [p for p in plugins if hasattr(p, "requests")]
    assert calls_of(noops) == [(p.name, 1, 1) if p.name.startswith("outer") else (p.name, 0, 0) for p in noops]


@pytest.mark.parametrize("style", styles(only=("call_next", "call_next-in-hook")))
def test_call_next_plugin_transforms_the_apps_streamed_body_without_buffering_it(serve, style):
    probe = StreamProbe()
    plugins = layered(style, None, Upper)
    with serve(wrap(probe.raw_app(child_task=False), manager_with(*plugins))) as s:
        status, headers, first, rest = read_stream(s.url + "/", probe)
    assert status == 200
    assert (first, first + rest) == (b"ONE,", b"ONE,TWO,THREE")
    assert probe.waited is True, "the body was buffered: its second chunk never saw the client hold the first"
    assert headers["x-app"] == "1"            # the app's headers, carried over


# -- flow control: a client that stops reading stops the producer -------------------------------------

CHUNK = b"x" * 65536
CHUNKS = 512                         # 32 MiB: several times what loopback socket buffers hold


class Produced:
    """Counts the chunks a body iterator has produced."""

    def __init__(self) -> None:
        self.count = 0

    async def chunks(self):
        for _ in range(CHUNKS):
            self.count += 1
            yield CHUNK


class BigStreamHook(MiddlewarePlugin):
    name = "big_streamer"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self, produced: Produced) -> None:
        self.produced = produced

    def process_request(self, request, ctx):
        return MiddlewareAction.respond(Response(200, [("content-type", "application/octet-stream")],
                                                 self.produced.chunks()))


class BigStreamCallNext(MiddlewarePlugin):
    name = "big_streamer"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self, produced: Produced) -> None:
        self.produced = produced

    async def process_request(self, request, call_next):
        return Response(200, [("content-type", "application/octet-stream")], self.produced.chunks())


def big_app(produced: Produced):
    """The same body, streamed by the app itself (each send awaits the server's flow control)."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        async for chunk in produced.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    return app


def _stalled_then_read(url: str, produced: Produced) -> tuple[int, int]:
    """Read the head, stop reading for a while; then how far the producer got, and the body's length."""
    with httpx.Client(timeout=WAIT) as client:
        with client.stream("GET", url) as r:
            assert r.status_code == 200
            time.sleep(0.5)
            while True:                  # the producer is stalled once its count stops moving
                seen = produced.count
                time.sleep(0.2)
                if produced.count == seen:
                    break
            stalled_at = produced.count
            total = sum(len(chunk) for chunk in r.iter_raw())
    return stalled_at, total


@pytest.mark.parametrize("producer", [
    "app",
    *(pytest.param(f"plugin-{s}")
      for s in ("hook", "call_next")),
])
def test_a_client_that_stops_reading_stops_the_streamed_body(serve, producer):
    produced = Produced()
    if producer == "app":        # the control: the app's own sends, through layers of both styles
        app = big_app(produced)
        plugins = layered("call_next-in-hook", None, lambda: NoopCallNext("actor", ACTOR_PRIORITY))
    else:
        app = never_app
        plugins = [BigStreamHook(produced) if producer == "plugin-hook" else BigStreamCallNext(produced)]
    with serve(wrap(app, manager_with(*plugins))) as s:
        stalled_at, total = _stalled_then_read(s.url + "/", produced)
    assert total == len(CHUNK) * CHUNKS
    assert stalled_at < CHUNKS * 3 // 4, f"{stalled_at} of {CHUNKS} chunks made while the client read none"
