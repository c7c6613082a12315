"""Issue 15, lazy body in call_next: ``await request.body()`` and ``request.stream()`` without ``needs_body``.

What the plugin read is replayed to the app, what it did not read streams through: the app (Starlette)
gets the whole body either way. The body is uploaded chunked, in pieces, so that it arrives as several
``http.request`` messages. Reading after ``call_next`` (the app has started) is a clear error that names
the plugin and the hook.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from covet_pipe import MiddlewarePlugin, wrap
from tests._helpers import WAIT
from tests._layers import ACTOR_PRIORITY, NoopHook, manager_with

PIECE = bytes(range(256)) * 64            # 16 KiB
PIECES = 8
PAYLOAD = PIECE * PIECES


def _digest(data: bytes) -> str:
    return f"{len(data)}:{hashlib.sha256(data).hexdigest()[:16]}"


async def endpoint(request: StarletteRequest):
    return PlainTextResponse(_digest(await request.body()))

app = Starlette(routes=[Route("/", endpoint, methods=["POST"])])


def _upload(url: str) -> httpx.Response:
    def pieces():
        for _ in range(PIECES):
            yield PIECE
    return httpx.post(url, content=pieces(), timeout=WAIT)


class ReadAll(MiddlewarePlugin):
    name = "reader"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self) -> None:
        self.read: list[bytes] = []

    async def process_request(self, request, call_next):
        self.read.append(await request.body())
        return await call_next(request)


class ReadFirstChunk(ReadAll):
    async def process_request(self, request, call_next):
        async for chunk in request.stream():
            self.read.append(chunk)
            break
        return await call_next(request)


class ReadStream(ReadAll):
    async def process_request(self, request, call_next):
        self.read.append(b"".join([chunk async for chunk in request.stream()]))
        return await call_next(request)


class NeedsBodyHook(NoopHook):
    """A hook in front that reads the body the old way (``needs_body``)."""

    needs_body = True


READERS = {"body()": ReadAll, "stream()": ReadStream, "stream()-first-chunk": ReadFirstChunk}
FRONTS = {
    "alone": lambda: [],
    "behind-hooks": lambda: [NoopHook("outer_hook", 10), NoopHook("inner_hook", 900)],
    "behind-a-needs_body-hook": lambda: [NeedsBodyHook("body_hook", 10)],
}


@pytest.mark.parametrize("front", list(FRONTS))
@pytest.mark.parametrize("reader", list(READERS))
def test_call_next_plugin_reads_the_body_lazily_and_the_app_still_gets_all_of_it(serve, reader, front):
    plugin = READERS[reader]()
    with serve(wrap(app, manager_with(plugin, *FRONTS[front]()))) as s:
        r = _upload(s.url + "/")
    assert (r.status_code, r.text) == (200, _digest(PAYLOAD))
    assert len(plugin.read) == 1
    if reader == "stream()-first-chunk":
        assert plugin.read[0] and PAYLOAD.startswith(plugin.read[0])
    else:
        assert plugin.read[0] == PAYLOAD


class ReadTooLate(MiddlewarePlugin):
    name = "late_reader"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def process_request(self, request, call_next):
        response = await call_next(request)
        try:
            await request.body()
        except Exception as exc:        # noqa: BLE001 - the test looks at what was raised
            self.error = exc
        return response


def test_reading_the_body_after_call_next_is_a_clear_error(serve):
    plugin = ReadTooLate()
    with serve(wrap(app, manager_with(plugin))) as s:
        r = _upload(s.url + "/")
    assert (r.status_code, r.text) == (200, _digest(PAYLOAD))     # the app read it; the plugin's error is its own
    assert plugin.error is not None, "reading the body after the app started did not raise"
    assert not isinstance(plugin.error, (AttributeError, TypeError)), repr(plugin.error)
    message = str(plugin.error)
    assert "late_reader" in message and "process_request" in message, message
