"""``admin_app(manager, token=...)``: the management API as an ASGI 3 app of its own.

Serve it on a port of its own (``uvicorn``/``hypercorn`` on 127.0.0.1) or mount it on a path of the
served app. Every request needs ``Authorization: Bearer <token>``: 401 without credentials, 403 with
a wrong token, 429 after too many failures from one address; those bodies carry no detail. An
unknown path is 404, a known path with another method 405, a handler that raises 500 with a body
that says only that (the exception goes to the ``covet_pipe.admin`` log). Every call that changes
state is logged with the caller's address.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import parse_qsl

from covet_pipe.admin import dashboard, metrics_route
from covet_pipe.admin.auth import Authenticator, load_token
from covet_pipe.admin.routes import ROUTES, AdminRequest, Raw, Route, Stream
from covet_pipe.logsafe import logger, printable

__all__ = ["AdminApp", "admin_app"]

log = logger("covet_pipe.admin")

#: the largest request body the admin API reads (a load request is a few hundred bytes)
MAX_BODY = 64 * 1024

_REFUSED = {401: b'{"error": "unauthorized"}', 403: b'{"error": "forbidden"}',
            429: b'{"error": "too many failed attempts"}'}


def _compile(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")


class AdminApp:
    """The admin API over *manager*; see :func:`admin_app`."""

    def __init__(self, manager: Any, token: str | None = None, token_file: str | None = None) -> None:
        self.manager = manager
        self._auth = Authenticator(load_token(token, token_file), public=dashboard.is_public)
        self._routes: list[tuple[re.Pattern[str], Route]] = [(_compile(r.path), r) for r in ROUTES + dashboard.ROUTES
                                                               + metrics_route.ROUTES]

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every endpoint this app serves, in the order a request's path is matched against them."""
        return tuple(r for _, r in self._routes)

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
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        refused = self._auth.check(headers, address, scope["method"], path.rstrip("/") or "/")
        if refused:
            extra = [(b"www-authenticate", b"Bearer")] if refused == 401 else []
            if refused == 429:
                extra = [(b"retry-after", str(self._auth.retry_after(address)).encode())]
            log.warning("admin: %d for %s %s from %s", refused, scope["method"],
                        printable(scope["path"], 200), printable(address))
            await _send(send, refused, _REFUSED[refused], extra)
            return
        body = await _read_body(receive)
        if body is None:
            await _send(send, 413, b'{"error": "request body too large"}')
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        request = AdminRequest(scope["method"], path.rstrip("/") or "/", query, headers, body, address,
                               self.routes)
        status, document = await self._dispatch(request)
        if isinstance(document, Stream):
            await _stream(send, receive, status, document)
        elif isinstance(document, Raw):
            await _send(send, status, document.body, list(document.headers), document.content_type.encode())
        else:
            await _send(send, status, json.dumps(document, default=str).encode())

    async def _dispatch(self, request: AdminRequest) -> tuple[int, Any]:
        method, path, address = request.method, request.path, request.client
        allowed = []
        literal = any(route.path == path for _, route in self._routes)
        for pattern, route in self._routes:
            m = pattern.match(path)
            if m is None or (literal and route.path != path):     # /_plugins/health is no plugin's name
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            if route.mutating:
                log.info("admin: %s %s from %s", method, printable(path, 200), printable(address))
            try:
                return await route.handler(self.manager, m.groupdict(), request)
            except Exception:
                log.exception("admin: %s %s raised", method, printable(path, 200))
                return 500, {"error": "internal error"}
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            return 405, Raw("application/json", json.dumps({"error": f"{method} is not allowed here; use {methods}"})
                            .encode(), ((b"allow", methods.encode()),))
        return 404, {"error": "no such endpoint", "endpoints": [f"{r.method} {r.path}" for _, r in self._routes]}


async def _read_body(receive: Any) -> bytes | None:
    """The request body, or None when it is larger than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _stream(send: Any, receive: Any, status: int, document: Stream) -> None:
    """Send *document*'s chunks until they end or the client disconnects."""
    headers = [(b"content-type", document.content_type.encode()), (b"cache-control", b"no-store"),
               (b"x-content-type-options", b"nosniff"), *document.headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    gone = asyncio.ensure_future(_disconnected(receive))
    chunks = document.chunks.__aiter__()
    try:
        while True:
            nxt = asyncio.ensure_future(chunks.__anext__())
            done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                nxt.cancel()
                await asyncio.gather(nxt, return_exceptions=True)   # let the generator unwind first
                break
            try:
                chunk = nxt.result()
            except StopAsyncIteration:
                break
            try:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except OSError:             # the client went away between two chunks
                break
        if not gone.done():
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        gone.cancel()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None,
                content_type: bytes = b"application/json") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": body})


def admin_app(manager: Any, token: str | None = None, token_file: str | None = None) -> AdminApp:
    """The management API over *manager*, guarded by *token* (or the first line of *token_file*).

    Without a token it refuses to be built (ValueError): the admin API is never open.
    Endpoints: ``GET /_plugins`` (``list_plugins()``), ``GET /_plugins/health``
    (``get_health_status()``; 503 when every plugin failed), ``GET /_plugins/chain`` (in order, per
    protocol), ``GET /_plugins/errors``, ``GET /_plugins/reloads``, ``GET /_plugins/openapi.json``,
    ``POST /_plugins/load`` (``{"path": ..., "sandbox": false}``; 201), ``GET /_plugins/{name}``,
    ``DELETE /_plugins/{name}`` (``?cascade=1``; 409 naming the dependents), ``GET /_plugins/{name}/policy``
    (the effective sandbox policy), ``POST /_plugins/{name}/reload`` (409 with the error when the new
    version fails; the old one keeps serving).
    """
    return AdminApp(manager, token=token, token_file=token_file)
