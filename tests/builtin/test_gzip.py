"""GZip: the same app behind covet-pipe's GZip and behind Starlette's GZipMiddleware, both through a
real uvicorn on 127.0.0.1, answer the same (headers apart from their order, the same bytes)."""

from __future__ import annotations

import asyncio
import gzip as gzip_format
import zlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import GZip
from covet_pipe.builtin.gzip import accepts_gzip
from tests._helpers import WAIT, StreamProbe

WORDS = b"covet pipe gzip plugin streams chunks headers vary encoding middleware starlette uvicorn ".split()
BIG = b" ".join(WORDS[(i * 7) % len(WORDS)] for i in range(9000))[:65536]


async def chunks():
    for i in range(3):
        yield BIG[i * 1000:(i + 1) * 1000]
        await asyncio.sleep(0)


def endpoint(make):
    async def handler(request):
        return make()
    return handler


ROUTES = {
    "/big": lambda: PlainTextResponse(BIG.decode()),
    "/small": lambda: PlainTextResponse("x" * 100),
    "/at-minimum": lambda: PlainTextResponse("x" * 500),
    "/below-minimum": lambda: PlainTextResponse("x" * 499),
    "/stream": lambda: StreamingResponse(chunks(), media_type="text/plain"),
    "/stream-small": lambda: StreamingResponse(iter([b"tiny"]), media_type="text/plain"),
    "/encoded": lambda: Response(BIG, media_type="text/plain", headers={"content-encoding": "br"}),
    "/sse": lambda: StreamingResponse(chunks(), media_type="text/event-stream"),
    "/png": lambda: Response(BIG, media_type="image/png"),
    "/grpc": lambda: Response(BIG, media_type="application/grpc+proto"),
    "/nocontent": lambda: Response(status_code=204),
    "/partial": lambda: Response(BIG, status_code=206, media_type="text/plain"),
    "/vary": lambda: PlainTextResponse(BIG.decode(), headers={"vary": "Origin"}),
    "/vary-already": lambda: PlainTextResponse(BIG.decode(), headers={"vary": "accept-encoding"}),
    "/json": lambda: JSONResponse([{"word": w.decode(), "n": i} for i, w in enumerate(WORDS * 40)]),
}

starlette_app = Starlette(routes=[Route(path, endpoint(make)) for path, make in ROUTES.items()])


async def app(scope, receive, send):
    """The Starlette routes, and raw ASGI answers: several body messages under a Content-Length."""
    if scope["type"] == "http" and scope["path"] == "/raw-pieces":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2000")]})
        await send({"type": "http.response.body", "body": BIG[:1000], "more_body": True})
        await send({"type": "http.response.body", "body": BIG[1000:2000], "more_body": False})
        return
    if scope["type"] == "http" and scope["path"] == "/raw-no-length-small":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": BIG[:100]})
        return
    if scope["type"] == "http" and scope["path"] == "/raw-no-length":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": BIG[:3000]})
        return
    await starlette_app(scope, receive, send)


PATHS = [*ROUTES, "/raw-pieces", "/raw-no-length", "/raw-no-length-small"]


@pytest.fixture(scope="module")
def servers():
    from tests.conftest import Served

    manager = PluginManager()
    manager.register(GZip())
    with Served(wrap(app, manager)) as ours, Served(GZipMiddleware(app)) as theirs:
        yield ours, theirs


def fetch(client, url, accept):
    """GET with that Accept-Encoding (None: none at all); the body as it came on the wire."""
    request = client.build_request("GET", url)
    if accept is None:
        del request.headers["accept-encoding"]          # (httpx sends one of its own)
    else:
        request.headers["accept-encoding"] = accept
    r = client.send(request, stream=True)
    try:
        raw = b"".join(r.iter_raw())
    finally:
        r.close()
    fields = sorted((k.lower(), v) for k, v in r.headers.multi_items() if k.lower() not in ("date", "server"))
    return r.status_code, fields, raw


def decoded(fields, raw):
    return gzip_format.decompress(raw) if ("content-encoding", "gzip") in fields else raw


@pytest.mark.parametrize("accept", ["gzip", "br, gzip;q=0.8", "deflate, gzip", None, "identity"])
@pytest.mark.parametrize("path", PATHS)
def test_gzip_answers_as_starlettes_gzip_middleware(servers, path, accept):
    ours, theirs = servers
    with httpx.Client(timeout=WAIT) as client:
        status, fields, raw = fetch(client, ours.url + path, accept)
        s_status, s_fields, s_raw = fetch(client, theirs.url + path, accept)
    if accept in (None, "identity") and path == "/raw-no-length-small":
        # a difference: without gzip, Vary is there unless the length was known to be short
        # (Starlette learns it from the body)
        assert ("vary", "Accept-Encoding") in fields and ("vary", "Accept-Encoding") not in s_fields
        fields.remove(("vary", "Accept-Encoding"))
    if path == "/vary-already" and ("vary", "accept-encoding, Accept-Encoding") in s_fields:
        # a difference: a Vary that already names Accept-Encoding is left as it is (Starlette repeats it)
        assert ("vary", "accept-encoding") in fields
        s_fields = sorted(("vary", "accept-encoding") if f == ("vary", "accept-encoding, Accept-Encoding") else f
                          for f in s_fields)
    assert status == s_status
    assert decoded(fields, raw) == decoded(s_fields, s_raw)
    assert fields == s_fields
    assert raw == s_raw                     # the same compressor, flushed the same way: the same bytes
    if path in ("/big", "/json", "/stream", "/raw-pieces", "/raw-no-length") and accept not in (None, "identity"):
        assert ("content-encoding", "gzip") in fields and len(raw) < len(decoded(fields, raw))


def test_a_refused_gzip_is_not_compressed(servers):
    ours, theirs = servers
    with httpx.Client(timeout=WAIT) as client:
        status, fields, raw = fetch(client, ours.url + "/big", "gzip;q=0, deflate")
        _, s_fields, _ = fetch(client, theirs.url + "/big", "gzip;q=0, deflate")
    assert status == 200 and raw == BIG and ("content-encoding", "gzip") not in fields
    assert ("vary", "Accept-Encoding") in fields
    assert ("content-encoding", "gzip") in s_fields      # Starlette looks for the substring "gzip"


def test_head_gets_the_headers_of_its_get(servers):
    ours, _ = servers
    with httpx.Client(timeout=WAIT) as client:
        r = client.head(ours.url + "/big", headers={"accept-encoding": "gzip"})
        get = client.get(ours.url + "/big", headers={"accept-encoding": "gzip"})
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["content-encoding"] == get.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == get.headers["vary"] == "Accept-Encoding"
    assert "content-length" not in r.headers             # the compressed length is not known without the body


def test_accepts_gzip_reads_q_values():
    assert accepts_gzip("gzip") and accepts_gzip("br;q=1.0, GZIP;q=0.5") and accepts_gzip("*")
    assert accepts_gzip("x-gzip")
    assert not accepts_gzip("") and not accepts_gzip("gzip;q=0") and not accepts_gzip("br, *;q=0")
    assert not accepts_gzip("identity") and not accepts_gzip("gzip;q=0, *")


def test_a_compressed_stream_stays_a_stream(serve):
    probe = StreamProbe()
    manager = PluginManager()
    manager.register(GZip(minimum_size=1))
    with serve(wrap(probe.raw_app(child_task=False), manager)) as s:
        with httpx.Client(timeout=WAIT, headers={"accept-encoding": "gzip"}) as client:
            with client.stream("GET", s.url + "/") as r:
                pieces = r.iter_raw()
                first = next(pieces)
                probe.client_has_first.set()
                rest = b"".join(pieces)
    assert r.headers["content-encoding"] == "gzip"
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert d.decompress(first) == b"one,"      # the first chunk decompresses alone: it was flushed
    assert d.decompress(rest) + d.flush() == b"two,three"
    assert probe.waited is True


class Upper(MiddlewarePlugin):
    """An inner plugin with a transform of its own: GZip (outermost) compresses what it made."""

    name = "upper"
    version = "1.0.0"
    priority = 100

    def process_response(self, response, ctx):
        response.transform_body(lambda chunk, last: chunk.upper())


def test_gzip_compresses_what_the_inner_plugins_transforms_made(serve):
    manager = PluginManager()
    manager.register(GZip())
    manager.register(Upper())
    with serve(wrap(app, manager)) as s:
        r = httpx.get(s.url + "/stream", headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and r.content == BIG[:3000].upper()


def test_a_large_body_compressed_in_a_worker_thread_is_whole(serve):
    big = BIG * 3                                          # 192 KiB, past thread_minimum_size

    async def large(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": big})

    manager = PluginManager()
    manager.register(GZip())
    with serve(wrap(large, manager)) as s:
        with httpx.Client(timeout=WAIT) as client:
            status, fields, raw = fetch(client, s.url + "/", "gzip")
    assert status == 200 and gzip_format.decompress(raw) == big
    assert ("content-length", str(len(raw))) in fields and len(raw) < len(big) // 3


def test_gzip_refuses_wrong_settings():
    with pytest.raises(ValueError, match=r"compresslevel=...\): expected 0 \(none\) to 9"):
        GZip(compresslevel=10)
    with pytest.raises(ValueError, match="minimum_size"):
        GZip(minimum_size=-1)

