"""The live dashboard: ``GET /_plugins/dashboard``, its static files, its snapshot, events and session.

The page, its script and its stylesheet hold no data and are served without credentials (a browser
cannot send the bearer header when it opens a page); everything the page shows comes from guarded
endpoints. The page runs no inline script: it is served with ``Content-Security-Policy:
default-src 'self'`` and loads ``static/dashboard.js`` and ``static/dashboard.css``. Without a session
it shows a token form: the token is posted once to ``POST /_plugins/session``, which answers with the
``covet_pipe_admin`` cookie, and is kept nowhere in the browser.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from covet_pipe.admin.events import events, snapshot
from covet_pipe.admin.routes import AdminRequest, Raw, Route
from covet_pipe.admin.sessions import SESSIONS, cookie_value, set_cookie

__all__ = ["PAGE_HEADERS", "ROUTES", "STATIC", "is_public"]

#: the files under ``static/`` that are served, with their content types (nothing else is)
STATIC = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
#: the page's own security headers: no inline script or style, no framing, no referrer
PAGE_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
#: a cookie's Path: the admin app's /_plugins below an optional mount point
_COOKIE_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*/_plugins$")


def is_public(method: str, path: str) -> bool:
    """Whether (*method*, *path*) is served without credentials: the page, its files, the session probe."""
    return method == "GET" and (path in ("/_plugins/dashboard", "/_plugins/session")
                                or path.removeprefix("/_plugins/static/") in STATIC)


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    return (resources.files("covet_pipe.admin") / "static" / name).read_bytes()


async def _page(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    return 200, Raw("text/html; charset=utf-8", _read("dashboard.html"), PAGE_HEADERS)


async def _static(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    name = params["file"]
    if name not in STATIC:      # not reached without credentials: only the files in STATIC are public
        return 404, {"error": "no such file", "files": sorted(STATIC)}
    return 200, Raw(STATIC[name], _read(name), PAGE_HEADERS)


async def _snapshot(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    return 200, await snapshot(manager)


def _cookie_path(request: AdminRequest) -> str | None:
    """The cookie's Path from ``?path=`` (default ``/_plugins``); None when it is not one."""
    path = request.query.get("path", "/_plugins")
    return path if _COOKIE_PATH.match(path) else None


_BAD_PATH = {"error": "?path= must be /_plugins below the mount point (such as /ops/_plugins), "
                      "or left out for /_plugins"}


async def _probe(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    cookie = cookie_value(request.headers)
    left = SESSIONS.remaining(cookie) if cookie is not None else 0.0
    return 200, {"open": left > 0, "expires_in": int(left)}


async def _open(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    # the app has checked the bearer token before this runs; a session is bound to it
    path = _cookie_path(request)
    if path is None:
        return 400, _BAD_PATH
    scheme, _, token = request.headers.get(b"authorization", b"").partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return 400, {"error": "open a session with the admin token: POST with Authorization: Bearer <token>"}
    value = SESSIONS.open(token.strip())
    ttl = int(SESSIONS.ttl)
    body = json.dumps({"open": True, "expires_in": ttl}).encode()
    return 200, Raw("application/json", body, ((b"set-cookie", set_cookie(value, path, ttl)),))


async def _close(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    path = _cookie_path(request)
    if path is None:
        return 400, _BAD_PATH
    cookie = cookie_value(request.headers)
    closed = SESSIONS.close(cookie) if cookie is not None else False
    body = json.dumps({"open": False, "closed": closed}).encode()
    return 200, Raw("application/json", body, ((b"set-cookie", set_cookie("", path, 0)),))


_PATH_QUERY = {"path": {"schema": {"type": "string", "pattern": _COOKIE_PATH.pattern},
                        "description": "the cookie's Path: /_plugins below the mount point (default /_plugins)"}}

ROUTES: list[Route] = [
    Route("GET", "/_plugins/dashboard", _page, False,
           "the live dashboard (an HTML page; no credentials needed, it holds no data)",
           content_type="text/html; charset=utf-8", public=True),
    Route("GET", "/_plugins/static/{file}", _static, False, "the dashboard's script, stylesheet and icon",
           content_type=tuple(STATIC.values()),
           errors=((404, None),), public=True),
    Route("GET", "/_plugins/dashboard/snapshot", _snapshot, False,
           "what the dashboard shows, once: plugins, chain per protocol, health, reload history, recent errors"),
    Route("GET", "/_plugins/events", events, False,
           "server-sent events: the dashboard's snapshot once a second, for 10 s a stream",
           content_type="text/event-stream; charset=utf-8"),
    Route("GET", "/_plugins/session", _probe, False,
           "whether the request's covet_pipe_admin cookie is an open session (no credentials needed)",
           public=True),
    Route("POST", "/_plugins/session", _open, True,
           "trade the bearer token for a browser session: sets the covet_pipe_admin cookie "
           "(HttpOnly, SameSite=Strict)", query=_PATH_QUERY, errors=((400, None),)),
    Route("DELETE", "/_plugins/session", _close, True, "end the browser session and clear its cookie",
           query=_PATH_QUERY, errors=((400, None),)),
]
