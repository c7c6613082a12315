"""An app that raises before its response: 500, or the 5xx its exception carries (``http_status``)."""

from __future__ import annotations

import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import StorageUnavailableError
from tests._helpers import asgi_call


class Hook(MiddlewarePlugin):
    name = "hook"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.set("x-seen", str(response.status))


class Around(MiddlewarePlugin):
    name = "around"
    version = "1.0.0"
    style = "call_next"

    async def process_request(self, request, call_next):
        return await call_next(request)


class Teapot(Exception):
    http_status = 418           # not a 5xx: ignored


async def _raises(exc: Exception) -> object:
    async def app(scope, receive, send):
        raise exc
    return app


@pytest.mark.parametrize("plugin", [Hook, Around], ids=["hook", "call_next"])
@pytest.mark.parametrize("exc, status", [
    (StorageUnavailableError("storage engine 'redis' is unavailable"), 503),
    (RuntimeError("boom"), 500),
    (Teapot("no"), 500),
], ids=["unavailable-503", "plain-500", "not-5xx-500"])
async def test_the_answer_follows_the_exception(plugin: type, exc: Exception, status: int,
                                                caplog: pytest.LogCaptureFixture) -> None:
    manager = PluginManager()
    manager.register(plugin())
    await manager.initialize_all()
    result = await asgi_call(wrap(await _raises(exc), manager), "/")
    assert result.status == status
    assert b"Traceback" not in result.body and str(exc).encode() not in result.body
    if plugin is Hook:
        assert result.header("x-seen") == str(status)      # the response hooks saw that answer
    assert f"covet-pipe answered {status}" in caplog.text
