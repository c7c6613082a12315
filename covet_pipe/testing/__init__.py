"""Testing plugins: a RequestContext, one request through an ASGI app in-process, and the pytest fixtures.

The module is a pytest plugin too (entry point ``pytest11`` ``covet_pipe.testing``, so it loads by itself
where covet-pipe is installed; ``pytest -p covet_pipe.testing`` where autoloading is off): ``covet_plugin``,
``covet_server`` and ``covet_build`` (:mod:`covet_pipe.testing.fixtures`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from covet_pipe._core import Headers, Request, RequestContext, make_request_context

__all__ = ["make_context", "call", "Result", "covet_build", "covet_plugin", "covet_server"]


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


# The pytest plugin (entry point pytest11 covet_pipe.testing, or -p covet_pipe.testing): its fixtures.
from covet_pipe.testing.fixtures import covet_build, covet_plugin, covet_server  # noqa: E402
