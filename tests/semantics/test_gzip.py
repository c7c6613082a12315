"""Issue 15, the built-in GZip plugin against Starlette's GZipMiddleware on the same app, through uvicorn.

For each route and each Accept-Encoding, ``covet_pipe.builtin.GZip()`` must answer as
``GZipMiddleware(app)`` (both with their defaults) does: the same status, Content-Encoding, Vary and
Content-Type, the same body once decoded, and framing true to the bytes sent. The compressed bytes
themselves may differ. Routes: a 64 KiB text (compressed), a small one (left alone), one already
encoded (left alone), an event stream (left alone), a streamed text (compressed as a stream).
"""

from __future__ import annotations

import gzip

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from covet_pipe import builtin, wrap
from tests._helpers import WAIT
from tests._layers import manager_with, noop_chain

BIG = b"".join(b"covet-pipe line %05d: the quick brown fox jumps over the lazy dog\n" % i
               for i in range(1000))[:64 * 1024]
SMALL = b"s" * 100


async def big(request):
    return PlainTextResponse(BIG)


async def small(request):
    return PlainTextResponse(SMALL)


async def encoded(request):
    return Response(BIG, media_type="text/plain", headers={"content-encoding": "br"})


async def _pieces(prefix: bytes = b""):
    for i in range(0, len(BIG), 16 * 1024):
        yield prefix + BIG[i:i + 16 * 1024]


async def events(request):
    return StreamingResponse(_pieces(b"data: "), media_type="text/event-stream")


async def stream(request):
    return StreamingResponse(_pieces(), media_type="text/plain")


app = Starlette(routes=[Route("/big", big), Route("/small", small), Route("/encoded", encoded),
                        Route("/events", events), Route("/stream", stream)])
ROUTES = ["/big", "/small", "/encoded", "/events", "/stream"]


def _fetch(url: str, accept: str) -> dict:
    """What a client sees: status, the encoding fields, the type, the decoded body (framing checked)."""
    with httpx.Client(timeout=WAIT) as client:
        with client.stream("GET", url, headers={"accept-encoding": accept}) as r:
            raw = b"".join(r.iter_raw())
    encoding = r.headers.get("content-encoding")
    decoded = gzip.decompress(raw) if encoding == "gzip" else raw
    length = r.headers.get("content-length")
    assert length is None or int(length) == len(raw), f"{url}: content-length {length}, {len(raw)} bytes sent"
    vary = {v.strip().lower() for v in ",".join(r.headers.get_list("vary")).split(",") if v.strip()}
    return {"status": r.status_code, "content-encoding": encoding, "vary": vary,
            "content-type": r.headers.get("content-type"), "body": decoded}


ACCEPTS = ("gzip", "")
CHAINS = {"gzip": lambda: [builtin.GZip()], "gzip-behind-mixed5+5": lambda: [builtin.GZip(), *noop_chain("mixed5+5")]}


def test_the_reference_compresses_the_large_routes_and_leaves_the_others_alone(serve):
    """What the comparison below rests on (so that "the same as Starlette" says something)."""
    with serve(GZipMiddleware(app)) as reference:
        encodings = {route: _fetch(reference.url + route, "gzip")["content-encoding"] for route in ROUTES}
        plain = _fetch(reference.url + "/big", "")
    assert encodings == {"/big": "gzip", "/small": None, "/encoded": "br", "/events": None, "/stream": "gzip"}
    assert (plain["content-encoding"], plain["body"]) == (None, BIG)


@pytest.mark.parametrize("chain", list(CHAINS))
def test_gzip_plugin_answers_as_starlettes_gzip_middleware(serve, chain):
    with serve(GZipMiddleware(app)) as reference, serve(wrap(app, manager_with(*CHAINS[chain]()))) as subject:
        for route in ROUTES:
            for accept in ACCEPTS:
                want = _fetch(reference.url + route, accept)
                got = _fetch(subject.url + route, accept)
                assert got == want, (route, accept)
