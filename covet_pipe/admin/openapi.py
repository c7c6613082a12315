"""The admin API's OpenAPI 3.1 document, made from the route table the app serves.

Every route gets an operation: its path parameters, its query parameters and request body when it
declares them (``Route.query``, ``Route.body``), its answers (``Route.status`` with ``Route.response``
as the schema, in ``Route.content_type``; then ``Route.errors``), and on every one the bearer scheme
with its 401, 403 and 429 (a ``Route.public`` one: no bearer, 429 only). A route that declares nothing
more than a summary still appears, with a JSON (or ``content_type``) answer of any shape.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["document", "openapi", "ERROR", "NAME_PATTERN"]

#: what every refusal and client error looks like
ERROR: dict[str, Any] = {"type": "object", "required": ["error"],
                         "properties": {"error": {"type": "string"}}}
#: a plugin name (the registry's rule)
NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$"

_PARAM = re.compile(r"\{(\w+)\}")
_REASONS = {200: "OK", 201: "Created", 400: "Bad request: the error says what to send instead",
            401: "No credentials (send Authorization: Bearer <token>)", 403: "Wrong token",
            404: "No such plugin; the body lists the known ones", 405: "Method not allowed",
            409: "Conflict: the error says with what", 413: "Request body larger than 64 KiB",
            422: "The plugin file did not load: the error names it and what to fix",
            429: "Too many failed attempts from this address (see Retry-After)",
            503: "Every plugin failed"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, content_type: str | tuple[str, ...], schema: Any) -> dict[str, Any]:
    types = (content_type,) if isinstance(content_type, str) else content_type
    return {"description": description, "content": {t: {"schema": schema} for t in types}}


def _operation_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", _PARAM.sub(r"by_\1", path)) if w and w != "_plugins"]
    return method.lower() + "".join(w[:1].upper() + w[1:] for w in words or ["plugins"])


def _reserved(path: str, literal_paths: set[str]) -> list[str]:
    """The literal segments other routes put where *path* has its first ``{param}`` (they win)."""
    prefix = path[:path.index("{")]
    rest_depth = path[len(prefix):].count("/")
    out = set()
    for other in literal_paths:
        if other.startswith(prefix) and other[len(prefix):].count("/") == rest_depth:
            out.add(other[len(prefix):].split("/")[0])
    return sorted(out)


def _operation(route: Any, reserved: list[str]) -> dict[str, Any]:
    method, path = route.method, route.path
    ct = getattr(route, "content_type", "application/json")
    status = getattr(route, "status", 200)
    schema = getattr(route, "response", None)
    answers: dict[str, Any] = {
        str(status): _answer(_REASONS.get(status, "OK"), ct, schema if schema is not None
                             else ({} if ct == "application/json" else {"type": "string"}))}
    public = bool(getattr(route, "public", False))
    params: list[dict[str, Any]] = []
    for name in _PARAM.findall(path):
        # The reserved names are said in words, not as a schema's "not": a request naming one is a call
        # of that other endpoint, which a client may make (a fuzzer's "invalid" value would be valid).
        param_schema: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
        what = "a plugin name" if name == "name" else f"the {name}"
        params.append({"name": name, "in": "path", "required": True, "schema": param_schema,
                       "description": what + (f" (not {', '.join(reserved)}: those paths are "
                                              "endpoints of their own)" if reserved else "")})
    if params:
        answers["404"] = _answer(_REASONS[404], "application/json", _ref("Error"))
    for name, spec in (getattr(route, "query", None) or {}).items():
        params.append({"name": name, "in": "query", "required": False, **spec})
    op: dict[str, Any] = {"operationId": _operation_id(method, path), "summary": route.summary,
                          "tags": ["changes state" if route.mutating else "reads"],
                          "security": [] if public else [{"bearer": []}]}
    if params:
        op["parameters"] = params
    body = getattr(route, "body", None)
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        answers["413"] = _answer(_REASONS[413], "application/json", _ref("Error"))
    for code, err_schema in getattr(route, "errors", None) or ():
        answers[str(code)] = _answer(_REASONS.get(code, "Error"), "application/json",
                                     err_schema if err_schema is not None else _ref("Error"))
    for code in (429,) if public else (401, 403, 429):
        answers[str(code)] = {"$ref": f"#/components/responses/R{code}"}
    op["responses"] = answers
    return op


def document(routes: Any, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of *routes* (``Route`` objects, in the order the app matches them)."""
    routes = list(routes)
    literal = {r.path for r in routes if "{" not in r.path}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        reserved = _reserved(route.path, literal) if "{" in route.path else []
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, reserved)
    refused = {"type": "object", "required": ["error"], "additionalProperties": False,
               "properties": {"error": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "covet-pipe admin API", "version": version,
                 "description": "The management API of a covet-pipe PluginManager (covet_pipe.admin_app). "
                                "Every call needs Authorization: Bearer <token>."},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the admin token (admin_app(token=...))"}},
            "schemas": {"Error": ERROR},
            "responses": {
                "R401": {"description": _REASONS[401], "content": {"application/json": {"schema": refused}},
                         "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
                "R403": {"description": _REASONS[403], "content": {"application/json": {"schema": refused}}},
                "R429": {"description": _REASONS[429], "content": {"application/json": {"schema": refused}},
                         "headers": {"Retry-After": {"schema": {"type": "string"}}}},
            },
        },
    }


async def openapi(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """``GET /_plugins/openapi.json``: the document of the routes the answering app serves."""
    import covet_pipe     # at call time: the package imports this module while it is being imported

    return 200, document(request.routes, covet_pipe.__version__)
