"""Helpers shared by the pipeline tests: direct ASGI calls, small apps, the server's loop."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Coroutine

import httpx

__all__ = ["WAIT", "StreamProbe", "read_stream", "Result", "asgi_call", "echo_app", "http_scope",
           "on_server_loop", "server_loop", "submit"]


#: seconds: a generous bound for "the other side got there", never a speed check
WAIT = 10


def http_scope(path: str = "/", *, method: str = "GET", headers: Any = (), query: bytes = b"",
               scope_type: str = "http") -> dict:
    """An ASGI HTTP scope as a server would build it."""
    return {
        "type": scope_type, "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query, "root_path": "",
        "headers": [(k.encode().lower(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }


@dataclass
class Result:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    messages: list[dict]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def getall(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)


async def asgi_call(app: Any, path: str = "/", *, method: str = "GET", headers: Any = (),
                    body: bytes = b"", query: bytes = b"") -> Result:
    """Call an ASGI app directly, the way a server does, and collect the response."""
    scope = http_scope(path, method=method, headers=headers, query=query)
    inbox = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if inbox:
            return inbox.pop(0)
        return {"type": "http.disconnect"}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers_out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
    return Result(start["status"], headers_out, data, sent)


async def lifespan(receive: Any, send: Any) -> None:
    """Answer an ASGI lifespan: startup and shutdown complete."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo_app(scope: dict, receive: Any, send: Any) -> None:
    """200 JSON describing the scope and body the app received (method, path, headers ...)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    payload = json.dumps({
        "method": scope["method"], "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_len": len(body), "body_head": body[:32].decode("latin-1"),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def server_loop(served: Any) -> asyncio.AbstractEventLoop:
    """The event loop a `serve` fixture's uvicorn runs on."""
    return served.server.servers[0].get_loop()


def submit(served: Any, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run *coro* on the server's loop (where the manager lives); a concurrent.futures.Future."""
    return asyncio.run_coroutine_threadsafe(coro, server_loop(served))


def on_server_loop(served: Any, coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
    """Run *coro* on the server's loop and wait for its result (from a plain thread)."""
    return submit(served, coro).result(timeout)


class StreamProbe:
    """An app whose second chunk waits until the client has the first."""

    def __init__(self) -> None:
        self.client_has_first = threading.Event()
        self.waited: bool | None = None

    async def wait_for_client(self) -> None:
        self.waited = await asyncio.to_thread(self.client_has_first.wait, WAIT)

    async def chunks(self):
        yield b"one,"
        await self.wait_for_client()
        yield b"two,"
        await asyncio.sleep(0)
        yield b"three"

    def raw_app(self, *, child_task: bool):
        async def app(scope, receive, send):
            if scope["type"] != "http":
                return

            async def stream():
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain"), (b"x-app", b"1")]})
                async for chunk in self.chunks():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            if child_task:
                await asyncio.create_task(stream())
            else:
                await stream()
        return app

    def starlette_app(self, spec_version: str | None):
        from starlette.applications import Starlette
        from starlette.responses import StreamingResponse
        from starlette.routing import Route

        async def endpoint(request):
            return StreamingResponse(self.chunks(), media_type="text/plain", headers={"x-app": "1"})

        inner = Starlette(routes=[Route("/", endpoint)])

        async def app(scope, receive, send):
            if spec_version is not None and scope["type"] == "http":
                scope = dict(scope, asgi={**scope["asgi"], "spec_version": spec_version})
            await inner(scope, receive, send)
        return app


def read_stream(url: str, probe: StreamProbe) -> tuple[int, dict, bytes, bytes]:
    with httpx.Client(timeout=WAIT) as client:
        with client.stream("GET", url) as r:
            pieces = r.iter_raw()
            first = next(pieces)
            probe.client_has_first.set()
            rest = b"".join(pieces)
            return r.status_code, dict(r.headers), first, rest
