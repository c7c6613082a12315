"""The admin app's three kinds of answer (JSON, Raw bytes, a Stream of server-sent events) and its body cap.

Driven through the ASGI interface directly: the point is what the app sends and when it stops
(a stream must end when the client disconnects, and must close its generator).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from covet_pipe import PluginManager
from covet_pipe.admin import app as admin_module
from covet_pipe.admin.routes import ROUTES, Raw, Route, Stream

TOKEN = "a-token-for-the-response-kinds-test"
closed: list[bool] = []


async def _raw(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    return 200, Raw("text/plain; version=0.0.4", b"metric 1\n", ((b"x-extra", b"1"),))


async def _ticks() -> Any:
    try:
        n = 0
        while True:
            yield f"data: {n}\n\n".encode()
            n += 1
            await asyncio.sleep(0.01)
    finally:
        closed.append(True)


async def _stream(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    return 200, Stream("text/event-stream", _ticks())


async def _echo(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    return 200, {"length": len(request.body), "query": request.query}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    extra = [Route("GET", "/_t/raw", _raw, False, "raw"), Route("GET", "/_t/stream", _stream, False, "sse"),
             Route("POST", "/_t/echo", _echo, False, "echo")]
    monkeypatch.setattr(admin_module, "ROUTES", ROUTES + extra)
    return admin_module.admin_app(PluginManager(), token=TOKEN)


def _scope(method: str, path: str, query: bytes = b"") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query,
            "headers": [(b"authorization", f"Bearer {TOKEN}".encode())], "client": ("127.0.0.1", 5)}


async def _call(app: Any, scope: dict[str, Any], bodies: list[bytes], disconnect_after: int | None = None) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": b, "more_body": i < len(bodies) - 1} for i, b in enumerate(bodies)]
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if disconnect_after is not None and len(sent) >= disconnect_after:
            gone.set()

    await asyncio.wait_for(app(scope, receive, send), 5)
    return sent


def test_raw_is_sent_as_it_is_with_its_content_type(app: Any) -> None:
    sent = asyncio.run(_call(app, _scope("GET", "/_t/raw"), [b""]))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200
    assert headers[b"content-type"] == b"text/plain; version=0.0.4"
    assert headers[b"x-extra"] == b"1" and headers[b"content-length"] == b"9"
    assert sent[1]["body"] == b"metric 1\n"


def test_a_stream_ends_when_the_client_goes_and_closes_its_generator(app: Any) -> None:
    closed.clear()
    sent = asyncio.run(_call(app, _scope("GET", "/_t/stream"), [b""], disconnect_after=4))
    assert sent[0]["status"] == 200 and dict(sent[0]["headers"])[b"content-type"] == b"text/event-stream"
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[:3] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
    assert closed == [True]


def test_the_body_and_query_reach_the_handler(app: Any) -> None:
    sent = asyncio.run(_call(app, _scope("POST", "/_t/echo", b"a=1&b=2"), [b"x" * 10, b"y" * 5]))
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"length": 15, "query": {"a": "1", "b": "2"}}'


def test_a_body_over_the_cap_is_413_and_the_handler_never_runs(app: Any) -> None:
    chunk = b"x" * 40_000
    sent = asyncio.run(_call(app, _scope("POST", "/_t/echo"), [chunk, chunk]))
    assert sent[0]["status"] == 413
    assert b"too large" in sent[1]["body"]
