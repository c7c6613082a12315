"""The apps the security tests attack: a Starlette router behind the built-ins, and the ways a prefix appears.

``covet-pipe serve tests.security._apps:app`` (and ``--root-path /api``), ``...:mounted`` (the
pipeline inside a Starlette ``Mount("/api", ...)``), ``...:fastapi_app`` (FastAPI's ``root_path``).
Every answer says which route the app's router chose, the route path it matched on, and the
security headers it received, so a test can check the guard and the router against each other.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import jwt
from starlette._utils import get_route_path
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from covet_pipe import MiddlewarePlugin, Pipeline, PluginManager, route_path, wrap
from covet_pipe.builtin import CORS, AuthGuard, JWTAuth, JWTHandler, RequestId

SECRET = "covet-pipe-security-test-secret-" + "s" * 32
ORIGIN = "https://app.example.com"
#: the routes only a valid token may reach
PROTECTED = ("/admin", "/admin/{rest:path}")


def token(claims: dict[str, Any] | None = None, key: str = SECRET, algorithm: str = "HS256",
          **headers: Any) -> str:
    """A token JWTAuth accepts (an admin with an exp) unless the arguments say otherwise."""
    body = {"sub": "ann", "roles": ["admin"], "exp": int(time.time()) + 600}
    body.update(claims or {})
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm,
                      headers=headers or None)


class RouteProbe(MiddlewarePlugin):
    """Answers with the route path the plugins decided on (``x-guard-route``), for comparison with the app's."""

    name = "route_probe"
    version = "1.0.0"
    priority = 900

    def process_request(self, request: Any, ctx: Any) -> None:
        ctx.state["route"] = route_path(request.scope)

    def process_response(self, response: Any, ctx: Any) -> None:
        if "route" in ctx.state:
            response.headers.set("x-guard-route", quote(ctx.state["route"], safe="/"))


def manager() -> PluginManager:
    m = PluginManager()
    m.register(RequestId())
    m.register(CORS(allow_origins=[ORIGIN], allow_credentials=True, allow_headers=["Authorization"]))
    m.register(JWTHandler())
    m.register(JWTAuth(secret_key=SECRET))
    m.register(AuthGuard(provider="jwt_auth", protect=["/admin"]))
    m.register(RouteProbe())
    return m


def _seen(request: StarletteRequest, route: str) -> JSONResponse:
    h = request.headers
    return JSONResponse({
        "route": route, "route_path": get_route_path(request.scope),
        "authorization": h.getlist("authorization"), "request_id": h.getlist("x-request-id"),
        "origin": h.getlist("origin"),
    })


async def protected(request: StarletteRequest) -> JSONResponse:
    return _seen(request, "protected")


async def public(request: StarletteRequest) -> JSONResponse:
    return _seen(request, "public")


def routes() -> list[Route]:
    return [*(Route(p, protected, methods=["GET", "POST", "DELETE"]) for p in PROTECTED),
            Route("/{rest:path}", public, methods=["GET", "POST", "DELETE", "OPTIONS"])]


#: the guarded app: serve it plain, with --root-path /api, or behind a prefix-stripping proxy
app = wrap(Starlette(routes=routes()), manager())
#: the guarded app mounted below /api in a Starlette app with no root path of its own
mounted = Starlette(routes=[Mount("/api", app=wrap(Starlette(routes=routes()), manager()))])


def _fastapi() -> Any:
    import warnings

    from fastapi import FastAPI
    with warnings.catch_warnings():
        # Deprecated in favour of the server's --root-path (tested above), still honoured: tested too.
        warnings.simplefilter("ignore")
        fa = FastAPI(root_path="/api", openapi_url=None)
    for p in PROTECTED:
        fa.add_api_route(p, protected, methods=["GET"])
    fa.add_api_route("/{rest:path}", public, methods=["GET"])
    # Inside FastAPI, after it has set scope["root_path"]: an outer wrap() could not see that prefix.
    fa.add_middleware(Pipeline, manager=manager())
    return fa


fastapi_app = _fastapi()


def _lenient() -> Any:
    m = PluginManager()
    m.register(JWTHandler())
    m.register(JWTAuth(secret_key=SECRET, require_exp=False))
    m.register(AuthGuard(protect=["/admin"]))
    return wrap(Starlette(routes=routes()), m)


def _any_origin() -> Any:
    m = PluginManager()
    m.register(CORS(allow_origins=["*"], allow_credentials=True, allow_any_origin_with_credentials=True))
    return wrap(Starlette(routes=routes()), m)


#: JWTAuth(require_exp=False): tokens without exp accepted
lenient_app = _lenient()
#: CORS with "*" and credentials, asked for explicitly
any_origin_app = _any_origin()
