"""Testing plugins: a RequestContext, one request through an ASGI app in-process, and the pytest fixtures.

The module is a pytest plugin too (entry point ``pytest11`` ``covet_pipe.testing``, so it loads by itself
where covet-pipe is installed; ``pytest -p covet_pipe.testing`` where autoloading is off): ``covet_plugin``,
``covet_server`` and ``covet_build`` (:mod:`covet_pipe.testing.fixtures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from covet_pipe._core import Headers, Request, RequestContext, make_request_context

if TYPE_CHECKING:
    from covet_pipe.testing._loaded import Exchange, LoadedPlugin
    from covet_pipe.testing._served import Reply, ServedPlugins

__all__ = ["make_context", "call", "Result", "covet_build", "covet_plugin", "covet_server", "BuildFixture",
           "Exchange", "LoadedPlugin", "PluginFixture", "Reply", "ServedPlugins", "ServerFixture"]

#: the type of the ``covet_plugin`` fixture (for annotating a test's parameter)
PluginFixture = Callable[..., "LoadedPlugin"]
#: the type of the ``covet_server`` fixture
ServerFixture = Callable[..., "ServedPlugins"]
#: the type of the ``covet_build`` fixture
BuildFixture = Callable[["str | Path"], Path]

#: the fixtures' classes, imported when first named (pytest imports this module at every start-up)
_LAZY = {"Exchange": "_loaded", "LoadedPlugin": "_loaded", "Reply": "_served", "ServedPlugins": "_served"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"covet_pipe.testing.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'covet_pipe.testing' has no attribute {name!r}")


def make_context(request: Request | None = None, *, protocol: str = "http",
                 services: Any = None) -> RequestContext:
    """A RequestContext for calling a plugin's hooks directly in a unit test.

    :param services: an object with ``get_service(name)``, e.g. ``manager.services``
        or any stand-in of your own.
    """
    return make_request_context(request if request is not None else Request(), protocol, services)


@dataclass
class Result:
    """What the app sent back: status, headers and the whole body."""

    status: int
    headers: Headers
    body: bytes


async def call(app: Any, method: str = "GET", path: str = "/", *,
               headers: Iterable[tuple[str, str]] | dict[str, str] = (), body: bytes = b"",
               query_string: bytes = b"") -> Result:
    """Send one HTTP request through an ASGI app (a Pipeline, say) without a server."""
    h = Headers(headers)
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query_string, "root_path": "", "headers": h.raw,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        raise AssertionError(f"the app sent no http.response.start (it sent {[m['type'] for m in sent]})")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Result(start["status"], Headers(start.get("headers") or []), payload)


# The pytest plugin (entry point pytest11 covet_pipe.testing, or -p covet_pipe.testing): its fixtures, where
# pytest is installed (covet-pipe does not depend on it; make_context, call and the classes work without it).
try:
    from covet_pipe.testing.fixtures import covet_build, covet_plugin, covet_server  # noqa: E402
except ModuleNotFoundError as exc:
    if exc.name != "pytest":
        raise
