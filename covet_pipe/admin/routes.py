"""The admin API's endpoints, as a table: each route's method, path, handler and whether it changes state.

A handler is ``async def handler(manager, params, request) -> (status, document)``; the app turns the
document into JSON, unless it is a :class:`Raw` (bytes with a content type: a page, a metrics
scrape) or a :class:`Stream` (server-sent events). ``params`` holds the ``{name}`` parts of the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from covet_pipe.errors import PluginNotFoundError

__all__ = ["ROUTES", "AdminRequest", "Raw", "Route", "Stream"]



class AdminRequest(NamedTuple):
    """What a handler may read of the request beyond the path's ``{name}`` parts."""
    method: str
    path: str                                   #: below the mount point
    query: dict[str, str]                       #: the last value of each query parameter
    headers: dict[bytes, bytes]                 #: lower-cased names
    body: bytes                                 #: read in full (the app caps it at MAX_BODY)
    client: str                                 #: the caller's address


Handler = Callable[[Any, dict[str, str], AdminRequest], Awaitable[tuple[int, Any]]]


class Raw(NamedTuple):
    """A handler's document that is not JSON: *body* sent as it is, with *content_type*."""
    content_type: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Stream(NamedTuple):
    """A streamed answer (server-sent events): *chunks* is an async iterator of bytes.

    The app sends each chunk as it comes and stops when the client goes away.
    """
    content_type: str
    chunks: Any
    headers: tuple[tuple[bytes, bytes], ...] = ()


class Route(NamedTuple):
    method: str
    path: str                   #: may hold ``{name}``
    handler: Handler
    mutating: bool
    summary: str


async def _list(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    return 200, manager.list_plugins()


async def _health(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    health = await manager.get_health_status()
    return (200 if health["status"] != "failed" else 503), health


async def _chain(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    middleware = [e._asdict() for e in manager.get_middleware_chain()]
    protocols = [r.name for r in manager.protocol_records()]
    return 200, {"middleware": middleware, "protocols": protocols}


def _known(manager: Any) -> list[str]:
    return sorted(p["name"] for p in manager.list_plugins())


async def _reload(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    name = params["name"]
    if name not in _known(manager):
        return 404, {"error": f"no plugin named {name!r}", "plugins": _known(manager)}
    try:
        await manager.reload_plugin(name)
    except PluginNotFoundError as exc:
        return 404, {"error": str(exc), "plugins": _known(manager)}
    except Exception as exc:       # the plugin's own code may raise anything; the old version stays
        return 409, {"error": f"reloading {name!r} failed: {exc}", "serving": "the old version keeps serving"}
    version = next((p["version"] for p in manager.list_plugins() if p["name"] == name), None)
    return 200, {"reloaded": name, "version": version}


ROUTES: list[Route] = [
    Route("GET", "/_plugins", _list, False, "every plugin with its version, kinds, style, state and counters"),
    Route("GET", "/_plugins/health", _health, False, "overall status and, per plugin, state, error and counters"),
    Route("GET", "/_plugins/chain", _chain, False, "the middleware chain in request order, and the protocol chain"),
    Route("POST", "/_plugins/{name}/reload", _reload, True, "reload a plugin in place from its file"),
]
