"""The admin API's endpoints, as a table: each route's method, path, handler and whether it changes state.

A handler is ``async def handler(manager, params) -> (status, document)``; the app turns the
document into JSON. ``params`` holds the ``{name}`` parts of the path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from covet_pipe.errors import PluginNotFoundError

__all__ = ["ROUTES", "Route"]

Handler = Callable[[Any, dict[str, str]], Awaitable[tuple[int, Any]]]


class Route(NamedTuple):
    method: str
    path: str                   #: may hold ``{name}``
    handler: Handler
    mutating: bool
    summary: str


async def _list(manager: Any, params: dict[str, str]) -> tuple[int, Any]:
    return 200, manager.list_plugins()


async def _health(manager: Any, params: dict[str, str]) -> tuple[int, Any]:
    health = await manager.get_health_status()
    return (200 if health["status"] != "failed" else 503), health


async def _chain(manager: Any, params: dict[str, str]) -> tuple[int, Any]:
    middleware = [e._asdict() for e in manager.get_middleware_chain()]
    protocols = [r.name for r in manager.protocol_records()]
    return 200, {"middleware": middleware, "protocols": protocols}


def _known(manager: Any) -> list[str]:
    return sorted(p["name"] for p in manager.list_plugins())


async def _reload(manager: Any, params: dict[str, str]) -> tuple[int, Any]:
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
