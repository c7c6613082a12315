"""The request body in a call_next plugin, read on demand, through a real uvicorn.

``await request.body()`` and ``async for chunk in request.stream()`` without ``needs_body``: what the
plugin read is replayed to the app, what it did not read reaches the app from the server untouched,
and reading after call_next started the app is a clear error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from covet_pipe import MiddlewarePlugin, Response, wrap
from tests._helpers import WAIT
from tests.test_callnext import manager_with


async def _digest(request: StarletteRequest):
    body = await request.body()
    return JSONResponse({"len": len(body), "sha": hashlib.sha256(body).hexdigest()})

digest_app = Starlette(routes=[Route("/", _digest, methods=["POST"])])


def _chunks(blob: bytes, size: int):
    for i in range(0, len(blob), size):
        yield blob[i:i + size]


class ReadsAll(MiddlewarePlugin):
    name = "reads_all"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        body = await request.body()
        again = await request.body()                  # read once, kept
        response = await call_next(request)
        response.headers["x-plugin-sha"] = hashlib.sha256(body).hexdigest()
        response.headers["x-same"] = str(again is body and request.body == body)
        return response


class ReadsSome(MiddlewarePlugin):
    """Reads the body's first chunks (at least *limit* bytes), then lets the app have the rest."""

    name = "reads_some"
    version = "1.0.0"
    limit = 100_000

    async def process_request(self, request, call_next):
        seen = b""
        async for chunk in request.stream():
            seen += chunk
            if len(seen) >= self.limit:
                break
        response = await call_next(request)
        response.headers["x-plugin-read"] = str(len(seen))
        response.headers["x-plugin-head"] = seen[:8].hex()
        return response


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_the_whole_body_read_by_the_plugin_is_replayed_to_the_app(serve, framing):
    blob = os.urandom(700_000)
    content = blob if framing == "length" else _chunks(blob, 65_536)
    with serve(wrap(digest_app, manager_with(ReadsAll()))) as s:
        r = httpx.post(s.url + "/", content=content, timeout=WAIT)
    sha = hashlib.sha256(blob).hexdigest()
    assert r.status_code == 200
    assert r.json() == {"len": len(blob), "sha": sha}
    assert (r.headers["x-plugin-sha"], r.headers["x-same"]) == (sha, "True")


def test_what_the_plugin_did_not_read_reaches_the_app_from_the_server(serve):
    blob = os.urandom(1_000_000)
    with serve(wrap(digest_app, manager_with(ReadsSome()))) as s:
        r = httpx.post(s.url + "/", content=_chunks(blob, 16_384), timeout=WAIT)
    assert r.status_code == 200
    assert r.json() == {"len": len(blob), "sha": hashlib.sha256(blob).hexdigest()}
    read = int(r.headers["x-plugin-read"])
    assert ReadsSome.limit <= read < len(blob)           # it stopped early: the rest came past it
    assert r.headers["x-plugin-head"] == blob[:8].hex()


class StreamsAll(MiddlewarePlugin):
    name = "streams_all"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        sizes = [len(chunk) async for chunk in request.stream()]
        body = await request.body()                   # what stream() read, joined
        response = await call_next(request)
        response.headers["x-plugin-read"] = f"{sum(sizes)}:{len(body)}"
        return response


def test_a_body_streamed_to_its_end_is_the_body_and_is_replayed(serve):
    blob = os.urandom(300_000)
    with serve(wrap(digest_app, manager_with(StreamsAll()))) as s:
        r = httpx.post(s.url + "/", content=_chunks(blob, 10_000), timeout=WAIT)
    assert r.json() == {"len": len(blob), "sha": hashlib.sha256(blob).hexdigest()}
    assert r.headers["x-plugin-read"] == f"{len(blob)}:{len(blob)}"


class ReadsLate(MiddlewarePlugin):
    name = "reads_late"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        await request.body()
        return response


def test_reading_the_body_after_call_next_is_a_clear_error(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    manager = manager_with(ReadsLate())
    with serve(wrap(app, manager)) as s:
        r = httpx.post(s.url + "/", content=b"x" * 1000, timeout=WAIT)
        health = asyncio.run_coroutine_threadsafe(manager.get_health_status(), s.loop).result(WAIT)
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    assert health["plugins"]["reads_late"]["errors"] == 1
    [logged] = [rec.getMessage() for rec in caplog.records if "request.body()" in rec.getMessage()]
    assert "plugin 'reads_late'" in logged and "after call_next()" in logged
    assert "read the body before calling call_next" in logged


class NeedsBodyToo(ReadsAll):
    name = "needs_body_too"
    needs_body = True


def test_needs_body_and_body_call_agree(serve):
    blob = os.urandom(50_000)
    with serve(wrap(digest_app, manager_with(NeedsBodyToo()))) as s:
        r = httpx.post(s.url + "/", content=blob, timeout=WAIT)
    assert r.json()["sha"] == r.headers["x-plugin-sha"] == hashlib.sha256(blob).hexdigest()
    assert r.headers["x-same"] == "True"


def test_a_client_leaving_while_the_plugin_reads_ends_the_request_quietly(serve, caplog):
    reading = threading.Event()
    outcome: list = []
    app_ran: list = []

    class Waits(MiddlewarePlugin):
        name = "waits"
        version = "1.0.0"

        async def process_request(self, request, call_next):
            reading.set()
            try:
                await request.body()
            except BaseException as exc:
                outcome.append(type(exc).__name__)
                raise
            return await call_next(request)

    async def app(scope, receive, send):
        app_ran.append(scope["type"])

    manager = manager_with(Waits())
    with serve(wrap(app, manager)) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            assert reading.wait(WAIT)
        for _ in range(200):
            if outcome:
                break
            threading.Event().wait(0.02)
        health = asyncio.run_coroutine_threadsafe(manager.get_health_status(), s.loop).result(WAIT)
    assert outcome == ["ClientDisconnected"]
    assert [a for a in app_ran if a == "http"] == []
    assert health["plugins"]["waits"]["errors"] == 0
    assert not [rec for rec in caplog.records if rec.levelname == "ERROR"]


def test_a_body_past_the_limit_is_answered_413(serve):
    with serve(wrap(digest_app, manager_with(ReadsAll()))) as s:
        r = httpx.post(s.url + "/", content=_chunks(b"x" * (16 * 1024 * 1024 + 1), 1 << 20), timeout=WAIT)
    assert r.status_code == 413
    assert "too large" in json.loads(r.content)["error"]


def test_a_plugin_reading_the_body_of_a_get_gets_empty_bytes(serve):
    class Peek(MiddlewarePlugin):
        name = "peek"
        version = "1.0.0"

        async def process_request(self, request, call_next):
            body = await request.body()
            return Response(200, body=f"{type(body).__name__}:{len(body)}:{isinstance(body, bytes)}")

    with serve(wrap(digest_app, manager_with(Peek()))) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert r.text == "RequestBody:0:True"
