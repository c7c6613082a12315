"""Pipeline, the ASGI 3 front: what a server and an app see of it when no plugin changes anything.

Lifespan is in test_lifecycle.py and test_lifespan_failures.py, websockets in test_websocket.py,
streaming in test_streaming.py; this file holds the embedding contract itself.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from covet_pipe import MiddlewarePlugin, Pipeline, PluginConfig, PluginManager, wrap
from tests._helpers import asgi_call, echo_app, http_scope


class Stamp(MiddlewarePlugin):
    name, version = "stamp", "1.0"

    def process_response(self, response: Any, ctx: Any) -> None:
        response.headers.add("x-stamp", "1")


def test_pipeline_refuses_what_is_not_an_asgi_app() -> None:
    with pytest.raises(TypeError, match=r"Pipeline\(app\): app must be an ASGI application"):
        Pipeline("myapp:app")


def test_servers_see_an_asgi3_app() -> None:
    # uvicorn and hypercorn pick ASGI 3 when __call__ is a coroutine function
    assert asyncio.iscoroutinefunction(Pipeline(echo_app).__call__)
    assert asyncio.iscoroutinefunction(Pipeline.__call__)
    assert len(inspect.signature(echo_app).parameters) == 3


def test_wrap_is_pipeline_and_keeps_the_given_manager_or_makes_one_from_config() -> None:
    manager = PluginManager()
    wrapped = wrap(echo_app, manager)
    assert isinstance(wrapped, Pipeline) and wrapped.manager is manager and wrapped.app is echo_app
    own = wrap(echo_app, config=PluginConfig(drain_timeout=12.5))
    assert own.manager is not manager and own.manager.config.drain_timeout == 12.5


async def test_with_no_plugins_the_app_answers_unchanged() -> None:
    direct = await asgi_call(echo_app, "/a/b", query=b"x=1", headers=[("X-One", "1")], method="POST", body=b"hi")
    piped = await asgi_call(Pipeline(echo_app), "/a/b", query=b"x=1", headers=[("X-One", "1")], method="POST",
                            body=b"hi")
    assert (piped.status, piped.headers, piped.json()) == (direct.status, direct.headers, direct.json())


async def test_a_plugin_registered_before_the_first_request_is_started_by_it() -> None:
    manager = PluginManager()
    manager.register(Stamp())
    result = await asgi_call(Pipeline(echo_app, manager))
    assert result.status == 200 and result.header("x-stamp") == "1"
    assert manager.status == "running"
    await manager.shutdown_all()


async def test_scope_types_the_chain_does_not_know_reach_the_app_untouched() -> None:
    seen: list[dict] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "custom.reply"})

    manager = PluginManager()
    manager.register(Stamp())
    await manager.initialize_all()
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "custom.event"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = dict(http_scope("/"), type="custom")
    await Pipeline(app, manager)(scope, receive, send)
    assert seen and seen[0]["type"] == "custom" and sent == [{"type": "custom.reply"}]
    await manager.shutdown_all()


async def test_an_app_exception_before_the_response_is_answered_by_the_pipeline() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        raise LookupError("app bug")

    manager = PluginManager()
    manager.register(Stamp())
    await manager.initialize_all()
    result = await asgi_call(Pipeline(app, manager))
    assert (result.status, result.json()) == (500, {"error": "Internal Server Error"})
    assert result.header("x-stamp") == "1"          # the response hook saw the 500
    await manager.shutdown_all()
