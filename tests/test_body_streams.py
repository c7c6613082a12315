"""Streamed bodies of the responses plugins make, through a real uvicorn on 127.0.0.1.

``Response(status, headers, body=<async iterator or iterable of bytes>)`` from a request hook is sent
chunk by chunk (no Content-Length: the server chunks it), each send awaited (the server's flow
control), and closed inside the loop when it will not be read to its end.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import httpx
import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, Response, wrap
from tests._helpers import WAIT, StreamProbe, read_stream
from tests.conftest import text_app


def sync_chunks(probe: StreamProbe):
    """The probe's chunks from a sync generator (its wait blocks: it runs in a worker thread)."""
    yield b"one,"
    probe.waited = probe.client_has_first.wait(WAIT)
    yield b"two,"
    yield b"three"


class Streams(MiddlewarePlugin):
    """Answers /stream with the body its factory makes; records how the body ended."""

    name = "streams"
    version = "1.0.0"

    def __init__(self, make_body, *, status: int = 200) -> None:
        self.make_body = make_body
        self.status = status
        self.ended = threading.Event()

    def process_request(self, request, ctx):
        if request.path == "/stream":
            return MiddlewareAction.respond(
                Response(self.status, {"x-streams": "1", "content-length": "999"}, body=self.make_body(self),
                         media_type="text/plain"))


class AsyncStreams(Streams):
    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        return Streams.process_request(self, request, ctx)


class Stamps(MiddlewarePlugin):
    """An outer plugin whose response hook sees the streamed answer."""

    name = "stamps"
    version = "1.0.0"
    priority = 10

    def process_response(self, response, ctx):
        response.headers.add("x-stamped", "1")


def served(serve, *plugins):
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    return serve(wrap(text_app, manager))


BODIES = {
    "async-generator": lambda probe: (lambda plugin: probe.chunks()),
    "sync-generator": lambda probe: (lambda plugin: sync_chunks(probe)),
}


@pytest.mark.parametrize("plugin_cls", [Streams, AsyncStreams], ids=["sync-hook", "async-hook"])
@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
def test_a_streamed_answer_reaches_the_client_chunk_by_chunk(serve, plugin_cls, body):
    probe = StreamProbe()
    with served(serve, plugin_cls(BODIES[body](probe)), Stamps()) as s:
        status, headers, first, rest = read_stream(s.url + "/stream", probe)
    assert status == 200
    assert first == b"one,"                                # the first chunk came alone
    assert first + rest == b"one,two,three"
    assert probe.waited is True, "the second chunk was made before the client had the first (buffered?)"
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    assert headers["x-streams"] == "1" and headers["x-stamped"] == "1"   # the response phase ran
    assert headers["content-type"] == "text/plain"


def test_a_list_of_chunks_is_a_streamed_body(serve):
    with served(serve, Streams(lambda plugin: [b"a", "é", bytearray(b"c")])) as s:
        r = httpx.get(s.url + "/stream")
    assert r.content == "aéc".encode() and r.headers["transfer-encoding"] == "chunked"


def test_a_streamed_answer_waits_for_a_client_that_does_not_read(serve):
    produced = []
    chunk = b"x" * 16384
    cap = 4096                                             # 64 MiB, if nothing held the stream back

    async def body(plugin):
        try:
            for i in range(cap):
                produced.append(i)
                yield chunk
        finally:
            plugin.ended.set()

    plugin = Streams(body)
    with served(serve, plugin) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            last, deadline = -1, time.monotonic() + WAIT
            while len(produced) != last and time.monotonic() < deadline:   # until the stream stalls
                last = len(produced)
                time.sleep(0.3)
            stalled_at = len(produced)
            received = 0
            while received < cap * len(chunk):
                data = sock.recv(1 << 20)
                assert data, "the server closed the connection"
                received += len(data)
                if data.endswith(b"0\r\n\r\n"):
                    break
        assert plugin.ended.wait(WAIT)
    assert stalled_at < cap // 4, f"{stalled_at} chunks made for a client that read nothing"
    assert len(produced) == cap                            # then it ran to its end as the client read


def test_a_streamed_answer_is_closed_when_the_client_hangs_up(serve):
    sent = []

    async def endless(plugin):
        try:
            while True:
                sent.append(1)
                yield b"tick\n"
                await asyncio.sleep(0.01)
        finally:
            plugin.ended.set()

    plugin = Streams(endless)
    with served(serve, plugin) as s:
        with httpx.Client(timeout=WAIT) as client:
            with client.stream("GET", s.url + "/stream") as r:
                assert next(r.iter_raw()).startswith(b"tick")
        assert plugin.ended.wait(WAIT), "the stream was still read after the client hung up"
        count = len(sent)
        time.sleep(0.1)
        assert len(sent) == count


@pytest.mark.parametrize("method, status", [("HEAD", 200), ("GET", 204), ("GET", 304)])
def test_a_streamed_answer_without_content_is_not_read_and_is_closed(serve, method, status):
    read = []
    made = []

    async def never_read():
        read.append(1)
        yield b"never"

    def body(plugin):
        made.append(never_read())
        return made[-1]

    plugin = Streams(body, status=status)
    with served(serve, plugin) as s:
        with httpx.Client(timeout=WAIT) as client:
            r = client.request(method, s.url + "/stream")
            assert (r.status_code, r.content) == (status, b"")
            assert "content-length" not in r.headers and "transfer-encoding" not in r.headers
            assert client.get(s.url + "/").status_code == 200       # the connection stays in sync
    assert read == [] and len(made) == 1
    assert made[0].ag_frame is None            # closed (aclose), not left to the garbage collector


def test_a_stream_that_yields_what_is_not_bytes_names_the_plugin(serve):
    async def body(plugin):
        yield b"ok,"
        yield 42

    manager = PluginManager()
    manager.register(Streams(body))
    pipeline = wrap(text_app, manager)
    reached: list = []

    async def server_side(scope, receive, send):
        try:
            await pipeline(scope, receive, send)
        except Exception as exc:
            reached.append(exc)
            raise

    with serve(server_side) as s:
        with pytest.raises(httpx.HTTPError):
            httpx.get(s.url + "/stream", timeout=WAIT)         # cut short: the start had gone out
    (exc,) = reached
    assert isinstance(exc, TypeError)
    assert str(exc) == ("plugin 'streams' process_request: the streamed body of its Response yielded int; "
                        "yield bytes (or str, sent as UTF-8)")


def test_response_refuses_what_is_neither_bytes_nor_a_stream():
    with pytest.raises(TypeError, match=r"bytes, str or an \(async\) iterable of bytes, got dict"):
        Response(200, body={"a": 1})
    with pytest.raises(TypeError, match="got int"):
        Response(200, body=3)
    r = Response(200, body=iter([b"x"]))
    assert r.body is None
