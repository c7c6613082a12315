"""The admin API's endpoints, as a table: each route's method, path, handler and whether it changes state.

A handler is ``async def handler(manager, params, request) -> (status, document)``; the app turns the
document into JSON, unless it is a :class:`Raw` (bytes with a content type: a page, a metrics
scrape) or a :class:`Stream` (server-sent events). ``params`` holds the ``{name}`` parts of the path.

A route may describe itself further for the OpenAPI document (``GET /_plugins/openapi.json``): the
content type of its answer, the schema of its document, its request body, its query parameters and
the errors it answers. A path without ``{...}`` wins over one with: ``/_plugins/health`` is never
the plugin named ``health``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from covet_pipe.admin import manage
from covet_pipe.admin.openapi import openapi
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
    routes: tuple[Any, ...] = ()                #: every Route of the app that answers (for its OpenAPI document)


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
    #: what its answer is (``text/html``, ``text/event-stream``, ``text/plain; version=0.0.4`` ...); a tuple
    #: when it depends on the request (a static file's)
    content_type: str | tuple[str, ...] = "application/json"
    #: JSON schema of the document of a successful answer (None: any)
    response: Any = None
    #: JSON schema of its JSON request body (None: it takes none)
    body: Any = None
    #: query parameter name -> OpenAPI parameter fields (``{"schema": {...}, "description": ...}``)
    query: Any = None
    #: the status of a successful answer
    status: int = 200
    #: (status, JSON schema or None for ``{"error": ...}``) of the errors it answers besides 401/403/429/404
    errors: tuple[tuple[int, Any], ...] = ()
    #: served without credentials (a page that holds no data): the document says so (no bearer, no 401/403)
    public: bool = False


async def _list(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    return 200, manager.list_plugins()


async def _health(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    health = await manager.get_health_status()
    return (200 if health["status"] != "failed" else 503), health


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


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_STR, _STRS = {"type": "string"}, {"type": "array", "items": {"type": "string"}}
_NULLABLE_STR = {"type": ["string", "null"]}
_PLUGIN = _object(["name", "version", "state", "kinds"], name=_STR, version=_STR, state=_STR, kinds=_STRS,
                  style=_STR, priority={"type": "integer"}, stats={"type": "object"}, error=_NULLABLE_STR)
_HEALTH = _object(["status", "plugins"], status={"enum": ["ok", "degraded", "failed"]},
                  plugins={"type": "object", "additionalProperties": {"type": "object"}})
_CHAIN_ENTRY = _object(["name", "version", "priority", "kind", "style", "state", "protocols"],
                       name=_STR, version=_STR, priority={"type": "integer"}, kind=_STR, style=_STR,
                       state=_STR, protocols=_STRS)
_RELOAD_EVENT = _object(["name", "old_version", "new_version", "ok", "error", "duration_s", "at"],
                        name=_STR, old_version=_NULLABLE_STR, new_version=_NULLABLE_STR, ok={"type": "boolean"},
                        error=_NULLABLE_STR, duration_s={"type": "number"}, at={"type": "number"})
_ERROR_EVENT = _object(["plugin", "hook", "error", "at"], plugin=_STR, hook=_STR, error=_STR, at={"type": "number"})
_LOAD_BODY = {"type": "object", "required": ["path"], "additionalProperties": False,
              "properties": {"path": {"type": "string", "minLength": 1, "maxLength": manage.MAX_PATH,
                                      "description": "the plugin file or package, on the server's filesystem"},
                             "sandbox": {"type": "boolean", "default": False,
                                         "description": "run it sandboxed in a helper process"}},
              "example": manage.LOAD_EXAMPLE}
_NOT_LOADED = _object(["error", "path"], error=_STR, path=_STR, plugin=_NULLABLE_STR)

ROUTES: list[Route] = [
    Route("GET", "/_plugins", _list, False, "every plugin with its version, kinds, style, state and counters",
          response={"type": "array", "items": _PLUGIN}),
    Route("GET", "/_plugins/health", _health, False, "overall status and, per plugin, state, error and counters",
          response=_HEALTH, errors=((503, _HEALTH),)),
    Route("GET", "/_plugins/chain", manage.chain, False,
          "the middleware chain in request order, per protocol, and the protocol chain",
          response=_object(["middleware", "protocols", "by_protocol"], middleware={"type": "array", "items": _CHAIN_ENTRY},
                           protocols=_STRS, by_protocol={"type": "object", "additionalProperties": _STRS})),
    Route("GET", "/_plugins/errors", manage.errors, False, "the last errors the plugins raised (hooks, initialize, shutdown), newest first",
          response=_object(["errors"], errors={"type": "array", "items": _ERROR_EVENT})),
    Route("GET", "/_plugins/reloads", manage.reloads, False,
          "the last reloads, newest first, and the reloads that worked and failed per plugin",
          response=_object(["reloads", "counts"], reloads={"type": "array", "items": _RELOAD_EVENT},
                           counts={"type": "object", "additionalProperties": _object(
                               ["ok", "failed"], ok={"type": "integer"}, failed={"type": "integer"})})),
    Route("GET", "/_plugins/openapi.json", openapi, False, "this API's OpenAPI 3.1 document",
          response={"type": "object", "required": ["openapi", "paths"]}),
    Route("POST", "/_plugins/load", manage.load, True, "load the plugins of a file or package and start them",
          body=_LOAD_BODY, status=201,
          response=_object(["loaded", "plugins"], loaded=_STRS, plugins={"type": "array", "items": {"type": "object"}}),
          errors=((400, None), (409, _NOT_LOADED), (422, _NOT_LOADED))),
    Route("GET", "/_plugins/{name}", manage.plugin, False,
          "one plugin: its record, counters, metadata, health and reload counts", response=_PLUGIN),
    Route("DELETE", "/_plugins/{name}", manage.unload, True,
          "stop and remove a plugin (?cascade=1: and the plugins that depend on it)",
          query={"cascade": {"schema": {"enum": ["0", "1", "true", "false"]},
                             "description": "1: unload the plugins that depend on it too"}},
          response=_object(["unloaded"], unloaded=_STRS),
          errors=((400, None), (409, _object(["error", "dependents"], error=_STR, dependents=_STRS)))),
    Route("GET", "/_plugins/{name}/policy", manage.policy, False,
          "the plugin's effective sandbox policy ({\"sandboxed\": false} for an in-process one)",
          response=_object(["plugin", "sandboxed", "kernel"], plugin=_STR, sandboxed={"type": "boolean"},
                           kernel={"type": "object"})),
    Route("POST", "/_plugins/{name}/reload", _reload, True, "reload a plugin in place from its file",
          response=_object(["reloaded", "version"], reloaded=_STR, version=_NULLABLE_STR),
          errors=((409, _object(["error", "serving"], error=_STR, serving=_STR)),)),
]
