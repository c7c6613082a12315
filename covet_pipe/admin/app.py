"""``admin_app(manager, token=...)``: the management API as an ASGI 3 app of its own.

Serve it on a port of its own (``uvicorn``/``hypercorn`` on 127.0.0.1) or mount it on a path of the
served app. Every request needs ``Authorization: Bearer <token>``: 401 without credentials, 403 with
a wrong token, 429 after too many failures from one address; those bodies carry no detail. An
unknown path is 404, a known path with another method 405, a handler that raises 500 with a body
that says only that (the exception goes to the ``covet_pipe.admin`` log). Every call that changes
state is logged with the caller's address.
"""

from __future__ import annotations

import json
import re
from typing import Any

from covet_pipe.admin.auth import Authenticator, load_token
from covet_pipe.admin.routes import ROUTES, Route
from covet_pipe.logsafe import logger, printable

__all__ = ["AdminApp", "admin_app"]

log = logger("covet_pipe.admin")

_REFUSED = {401: b'{"error": "unauthorized"}', 403: b'{"error": "forbidden"}',
            429: b'{"error": "too many failed attempts"}'}


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


class AdminApp:
    """The admin API over *manager*; see :func:`admin_app`."""

    def __init__(self, manager: Any, token: str | None = None, token_file: str | None = None) -> None:
        self.manager = manager
        self._auth = Authenticator(load_token(token, token_file))
        self._routes: list[tuple[re.Pattern[str], Route]] = [(_compile(r.path), r) for r in ROUTES]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return                      # websockets are refused by the server when not accepted
        client = scope.get("client")
        address = client[0] if client else "unknown"
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        refused = self._auth.check(headers, address)
        if refused:
            extra = [(b"www-authenticate", b"Bearer")] if refused == 401 else []
            if refused == 429:
                extra = [(b"retry-after", str(self._auth.retry_after(address)).encode())]
            log.warning("admin: %d for %s %s from %s", refused, scope["method"],
                        printable(scope["path"], 200), printable(address))
            await _send(send, refused, _REFUSED[refused], extra)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        status, document = await self._dispatch(scope["method"], path.rstrip("/") or "/", address)
        await _send(send, status, json.dumps(document, default=str).encode())

    async def _dispatch(self, method: str, path: str, address: str) -> tuple[int, Any]:
        allowed = []
        for pattern, route in self._routes:
            m = pattern.match(path)
            if m is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if route.mutating:
                log.info("admin: %s %s from %s", method, printable(path, 200), printable(address))
            try:
                return await route.handler(self.manager, m.groupdict())
            except Exception:
                log.exception("admin: %s %s raised", method, printable(path, 200))
                return 500, {"error": "internal error"}
        if allowed:
            return 405, {"error": f"{method} is not allowed here; use {', '.join(sorted(set(allowed)))}"}
        return 404, {"error": "no such endpoint", "endpoints": [f"{r.method} {r.path}" for _, r in self._routes]}


async def _send(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def admin_app(manager: Any, token: str | None = None, token_file: str | None = None) -> AdminApp:
    """The management API over *manager*, guarded by *token* (or the first line of *token_file*).

    Without a token it refuses to be built (ValueError): the admin API is never open.
    Endpoints: ``GET /_plugins`` (``list_plugins()``), ``GET /_plugins/health``
    (``get_health_status()``; 503 when every plugin failed), ``GET /_plugins/chain``,
    ``POST /_plugins/{name}/reload`` (409 with the error when the new version fails; the old one keeps serving).
    """
    return AdminApp(manager, token=token, token_file=token_file)
