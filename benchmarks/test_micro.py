"""Micro cases of the dispatch core (pytest-benchmark).

    python -m pytest -q benchmarks/test_micro.py --benchmark-only        # timed (make bench-micro)
    python -m pytest -q benchmarks/test_micro.py --benchmark-disable     # as ordinary tests

They live in benchmarks/, outside ``testpaths``, so ``make test`` does not run them. Requests are
stepped with ``coro.send(None)`` (nothing on these paths suspends), so no event loop is timed.
"""

from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import apps  # noqa: E402

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Request, Response, Snapshot  # noqa: E402
from covet_pipe._core import Entry  # noqa: E402


class _Recorder:
    """An ASGI send that keeps what it got (for the checks) and can forget it (between rounds)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.messages.append(message)


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def _step(app, scope, send) -> None:
    coro = app(scope, _receive, send)
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AssertionError("the request suspended; it should complete without an event loop")


def _one_request(app, scope) -> list[dict]:
    rec = _Recorder()
    _step(app, scope, rec)
    return rec.messages


def _noop_send():
    async def send(message: dict) -> None:
        return None
    return send


@pytest.fixture
def scope() -> dict:
    return apps.http_scope()


def test_headers_get_10(benchmark, scope):
    """Request.headers.get on a request with 10 headers (the last one, a miss-heavy scan)."""
    headers = Request(scope).headers
    assert benchmark(headers.get, "cookie") == "session=abc123; theme=dark"


def test_request_headers_view(benchmark, scope):
    """Building the Request view and its Headers over a scope, then one lookup."""
    def view():
        return Request(scope).headers.get("host")
    assert benchmark(view) == "127.0.0.1:8000"


def test_request_no_plugins(benchmark, scope):
    """A request through the pipeline with an empty chain (the pass-through path)."""
    app = apps.covet(apps.hello, [])
    assert [m["type"] for m in _one_request(app, scope)] == ["http.response.start", "http.response.body"]
    benchmark(_step, app, scope, _noop_send())


def test_request_1_sync_plugin(benchmark, scope):
    """A request through 1 plugin with sync request + response hooks."""
    app = apps.covet(apps.hello, apps.sync_plugins(1))
    got = _one_request(app, scope)
    assert [m["type"] for m in got] == ["http.response.start", "http.response.body"]
    assert got[0]["status"] == 200 and got[1]["body"] == apps.BODY
    benchmark(_step, app, scope, _noop_send())


def test_request_20_sync_plugins(benchmark, scope):
    """A request through 20 plugins with sync request + response hooks."""
    app = apps.covet(apps.hello, apps.sync_plugins(20))
    assert [m["type"] for m in _one_request(app, scope)] == ["http.response.start", "http.response.body"]
    benchmark(_step, app, scope, _noop_send())


def test_request_1_async_plugin(benchmark, scope):
    """A request through 1 plugin with ``async def`` request + response hooks."""
    app = apps.covet(apps.hello, apps.async_plugins(1))
    assert [m["type"] for m in _one_request(app, scope)] == ["http.response.start", "http.response.body"]
    benchmark(_step, app, scope, _noop_send())


class _Answer(MiddlewarePlugin):
    name = "answer"
    version = "1.0.0"

    def __init__(self) -> None:
        self.action = MiddlewareAction.respond(Response(204, headers={"x-answered": "1"}))

    def process_request(self, request, ctx):
        return self.action


def test_request_phase_short_circuit(benchmark, scope):
    """A request hook answers (respond): the app is skipped, the plugin's response is sent."""
    app_ran = []

    async def app(scope, receive, send):
        app_ran.append(1)
        await apps.hello(scope, receive, send)

    pipeline = apps.covet(app, apps.sync_plugins(4) + [_Answer()])
    got = _one_request(pipeline, scope)
    assert not app_ran
    assert got[0]["type"] == "http.response.start" and got[0]["status"] == 204
    assert (b"x-answered", b"1") in [tuple(h) for h in got[0]["headers"]]
    benchmark(_step, pipeline, scope, _noop_send())
    assert not app_ran


def test_snapshot_build_20(benchmark):
    """Building (sorting, validating, segmenting) an immutable chain snapshot of 20 entries."""
    entries = [Entry(p, name=p.name, version="1.0.0", priority=p.priority,
                     req_hook=p.process_request, resp_hook=p.process_response)
               for p in reversed(apps.sync_plugins(20))]
    snap = benchmark(Snapshot, entries, 1)
    assert snap.order() == tuple(sorted(e.name for e in entries))
