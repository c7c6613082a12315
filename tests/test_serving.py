"""The pipeline served by a real uvicorn on 127.0.0.1, driven by a real HTTP client."""

from __future__ import annotations

import asyncio
import gc
import json
from typing import Any

import httpx

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import RequestId
from tests._helpers import lifespan
from tests.conftest import text_app


class Gate(MiddlewarePlugin):
    name = "gate"
    version = "1.0.0"
    priority = 50

    def process_request(self, request, ctx):
        if request.path.startswith("/deny"):
            return MiddlewareAction.reject(403, "denied by gate")
        request.headers.set("x-seen", "gate")

    def process_response(self, response, ctx):
        response.headers.add("x-gate", "1")


def test_served_request_runs_hooks_and_reaches_app(serve):
    manager = PluginManager()
    manager.register(Gate())
    manager.register(RequestId())
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/hello")
        assert r.status_code == 200
        assert r.text == "GET /hello seen=gate"
        assert r.headers["x-gate"] == "1"
        assert len(r.headers["x-request-id"]) == 32
        denied = httpx.get(s.url + "/deny/me")
        assert denied.status_code == 403
        assert denied.json() == {"error": "denied by gate"}
        assert denied.headers["x-request-id"]          # response hooks ran for the plugins that ran
        assert "x-gate" in denied.headers
    # lifespan shut the plugins down when the server stopped
    assert {p["state"] for p in manager.list_plugins()} == {"stopped"}


def _awaited(step: Any) -> Any:
    """What *step* (a suspended coroutine, or an awaitable driving one) is waiting on: its ``cr_await``;
    an awaitable that is no coroutine (Cython's coroutine_wrapper, covet-pipe's _AppRun) shows the
    coroutine it drives only to the garbage collector."""
    nxt = getattr(step, "cr_await", None)
    if nxt is not None or hasattr(step, "cr_code"):
        return nxt
    return next((r for r in gc.get_referents(step) if hasattr(r, "cr_code")), None)


async def await_chain_app(scope: dict, receive: Any, send: Any) -> None:
    """Answers with what its request's task is awaiting, outermost first: the task's coroutine, what
    that awaits, and so on, read while the app waits (a running coroutine awaits nothing yet)."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    task = asyncio.current_task()
    assert task is not None
    chain: list[str] = []
    read = asyncio.Event()

    def look() -> None:
        step: Any = task.get_coro()
        while step is not None and len(chain) < 20:
            chain.append(getattr(step, "__qualname__", type(step).__name__))
            step = _awaited(step)
        read.set()

    asyncio.get_running_loop().call_soon(look)
    await read.wait()
    body = json.dumps(chain).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _layers(n: int, *, async_request: bool) -> list[MiddlewarePlugin]:
    out: list[MiddlewarePlugin] = []
    for i in range(n):
        def process_request(self: Any, request: Any, ctx: Any) -> None:
            return None

        async def async_process_request(self: Any, request: Any, ctx: Any) -> None:
            return None

        def process_response(self: Any, response: Any, ctx: Any) -> None:
            response.headers.add("x-layer", self.name)

        cls = type(f"Layer{i}", (MiddlewarePlugin,), {
            "name": f"layer_{i}", "version": "1.0.0", "priority": 100 + i,
            "process_request": async_process_request if async_request and i == n - 1 else process_request,
            "process_response": process_response})
        out.append(cls())
    return out


def _served_chain(serve: Any, plugins: list[MiddlewarePlugin]) -> tuple[list[str], httpx.Response]:
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    # the e2e benchmark's server: uvloop and httptools (uvicorn's own middleware in front, as there)
    with serve(wrap(await_chain_app, manager), loop="uvloop", http="httptools") as s:
        r = httpx.get(s.url + "/hello")
    assert r.status_code == 200
    return r.json(), r


def test_served_sync_chain_awaits_the_app_through_the_simple_path(serve):
    # A chain of sync hooks runs its request hooks before the server awaits anything and hands the
    # server the app's own coroutine in a thin wrapper (_AppRun): no covet-pipe coroutine (_run) between
    # uvicorn's task and the app. Something in uvicorn's scope or set-up that forced the general path
    # would cost every served request what the stepped benchmarks never see.
    chain, r = _served_chain(serve, _layers(10, async_request=False))
    assert "_AppRun" in chain, chain
    assert "_run" not in chain, chain
    assert chain.index("_AppRun") < chain.index("await_chain_app"), chain
    assert r.headers.get_list("x-layer") == [f"layer_{i}" for i in reversed(range(10))]   # every layer ran


def test_served_chain_with_an_async_hook_takes_the_general_path(serve):
    # The other side of the check above: an async request hook may suspend, so the request runs in
    # covet-pipe's own coroutine, which the same look at the await chain sees.
    chain, r = _served_chain(serve, _layers(10, async_request=True))
    assert "_run" in chain, chain
    assert "_AppRun" not in chain, chain
    assert chain.index("_run") < chain.index("await_chain_app"), chain
    assert r.headers.get_list("x-layer") == [f"layer_{i}" for i in reversed(range(10))]
