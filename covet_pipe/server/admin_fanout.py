"""``--workers N --admin HOST:PORT``: one admin port, every worker behind it.

Each worker has its own manager, so a reload must reach each of them. The supervisor serves the
admin port (in a thread with its own event loop) and forwards every call, with the same token, to
each worker's control socket: a Unix socket per worker in a run directory only the serving user can
enter (``covet-pipe-admin-*``, mode 0700), where the worker serves the same admin API. The answer:

- every worker answered the same status and JSON document: that document (header
  ``X-Covet-Pipe-Workers: N``);
- they differ (counters, a reload that failed in one): ``{"workers": [{"worker": SLOT, "pid": PID,
  "status": CODE, "document": ...}, ...]}`` with the worst status (a worker that does not answer,
  between a crash and its restart, is 502 there);
- a non-JSON answer (a page, a metrics scrape): the first worker's, as it is;
- the dashboard's snapshot and its stream (``/_plugins/dashboard/snapshot``, ``/_plugins/events``):
  the workers' counters summed (:mod:`covet_pipe.server.admin_fanevents`).

The supervisor checks the credentials first (the same 401/403/429 as the admin app) and logs every
call that changes state with the caller's address. Nothing a worker sends is evaluated: JSON is parsed.

Browser sessions belong to the supervisor: it serves the dashboard page, its static files and
``/_plugins/session`` itself (the handlers of :mod:`covet_pipe.admin.dashboard`, sessions in this
process's :data:`~covet_pipe.admin.sessions.SESSIONS`), accepts the ``covet_pipe_admin`` cookie (a
mutating call must then carry ``X-Covet-Pipe: 1``, else 403) and forwards with the bearer token, so a
worker never sees a cookie; a cookie's stream ends with its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from covet_pipe.admin import dashboard
from covet_pipe.admin.auth import Authenticator
from covet_pipe.admin.routes import AdminRequest, Raw
from covet_pipe.admin.sessions import cookie_value
from covet_pipe.logsafe import logger, printable
from covet_pipe.server.admin_fanevents import SummedDashboard
from covet_pipe.server.admin_forward import Answer, forward
from covet_pipe.server.admin_port import AdminPort, admin_token, bind_admin
from covet_pipe.server.config import ServeConfig

__all__ = ["Answer", "FanOutApp", "FanOutPort", "merge_answers"]

log = logger("covet_pipe.admin")

#: (slot, pid or None, control socket path) of each worker
Workers = Callable[[], list[tuple[int, "int | None", str]]]
MAX_BODY = 64 * 1024
#: the dashboard's routes the supervisor answers itself: they need no worker's manager
_HERE = ("/_plugins/dashboard", "/_plugins/static/{file}", "/_plugins/session")
LOCAL = [(re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(r.path)) + "$"), r)
         for r in dashboard.ROUTES if r.path in _HERE]
SNAPSHOT, EVENTS = "/_plugins/dashboard/snapshot", "/_plugins/events"
_REFUSED = {401: b'{"error": "unauthorized"}', 403: b'{"error": "forbidden"}',
            429: b'{"error": "too many failed attempts"}'}


def merge_answers(answers: list[Answer]) -> tuple[int, str, bytes, list[tuple[bytes, bytes]]]:
    """(status, content type, body, extra headers) of the workers' *answers* merged (module docstring)."""
    count = [(b"x-covet-pipe-workers", str(len(answers)).encode())]
    json_answers = [a for a in answers if a.content_type.startswith("application/json")]
    if len(json_answers) < len(answers):
        first = next((a for a in answers if not a.content_type.startswith("application/json")), answers[0])
        return first.status, first.content_type, first.body, count
    documents = [a.document() for a in answers]
    if len({a.status for a in answers}) == 1 and all(d == documents[0] for d in documents):
        return answers[0].status, "application/json", json.dumps(documents[0]).encode(), count
    workers = [{"worker": a.slot, "pid": a.pid, "status": a.status, "document": d}
               for a, d in zip(answers, documents)]
    status = max(a.status for a in answers)
    return status, "application/json", json.dumps({"workers": workers}, default=str).encode(), count


class FanOutApp:
    """The supervisor's admin app: checks the token, forwards to every worker, merges the answers."""

    def __init__(self, token: str, workers: Workers) -> None:
        self.token = token
        self.workers = workers
        self._auth = Authenticator(token, public=dashboard.is_public)
        self.dashboard = SummedDashboard(token, workers)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        client = scope.get("client")
        address = client[0] if client else "unknown"
        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        method = scope["method"]
        path = scope["path"].rstrip("/") or "/"
        refused = self._auth.check(headers, address, method, path)
        if refused:
            extra = [(b"www-authenticate", b"Bearer")] if refused == 401 else []
            if refused == 429:
                extra = [(b"retry-after", str(self._auth.retry_after(address)).encode())]
            log.warning("admin: %d for %s %s from %s", refused, scope["method"], printable(scope["path"], 200),
                        printable(address))
            await _send(send, refused, "application/json", _REFUSED[refused], extra)
            return
        body = await _read_body(receive)
        if body is None:
            await _send(send, 413, "application/json", b'{"error": "request body too large"}')
            return
        local = _local(method, path)
        if local is not None:
            await self._answer_here(local, scope, headers, body, address, send)
            return
        target = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target_text = target.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        if method not in ("GET", "HEAD"):
            log.info("admin: %s %s from %s (to every worker)", method, printable(scope["path"], 200),
                     printable(address))
        workers = self.workers()
        if method == "GET" and path == EVENTS and workers:
            await self._summed_events(headers, send, receive)
            return
        if method == "GET" and path == SNAPSHOT and workers:
            status, summed = await self.dashboard.snapshot()
            await _send(send, status, "application/json", summed,
                        [(b"x-covet-pipe-workers", str(len(workers)).encode())])
            return
        answers = await asyncio.gather(*(forward(slot, pid, path, method, target_text, self.token, body)
                                         for slot, pid, path in workers))
        if not answers:
            await _send(send, 503, "application/json", b'{"error": "no worker is running"}')
            return
        status, content_type, merged, extra = merge_answers(list(answers))
        await _send(send, status, content_type, merged, extra)

    async def _answer_here(self, local: tuple[Any, dict[str, str]], scope: dict[str, Any],
                           headers: dict[bytes, bytes], body: bytes, address: str, send: Any) -> None:
        """A dashboard route the supervisor serves itself (the page, its files, the session)."""
        route, params = local
        if route.mutating:
            log.info("admin: %s %s from %s", route.method, printable(route.path, 200), printable(address))
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        request = AdminRequest(scope["method"], scope["path"].rstrip("/"), query, headers, body, address)
        try:
            status, document = await route.handler(None, params, request)
        except Exception:
            log.exception("admin: %s %s raised", route.method, printable(route.path, 200))
            status, document = 500, {"error": "internal error"}
        if isinstance(document, Raw):
            await _send(send, status, document.content_type, document.body, list(document.headers))
        else:
            await _send(send, status, "application/json", json.dumps(document).encode())

    async def _summed_events(self, headers: dict[bytes, bytes], send: Any, receive: Any) -> None:
        """``GET /_plugins/events``: the supervisor's own stream of the workers' summed snapshots."""
        if self.dashboard.full():
            await _send(send, 503, "application/json", b'{"error": "too many event streams are open; close a '
                        b'dashboard, or poll GET /_plugins/dashboard/snapshot"}')
            return
        cookie = None if headers.get(b"authorization") else cookie_value(headers)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"), (b"x-accel-buffering", b"no")]})
        gone = asyncio.ensure_future(_disconnected(receive))
        stream = self.dashboard.events(cookie)
        try:
            while True:
                nxt = asyncio.ensure_future(stream.__anext__())
                done, _ = await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt       # the generator stops running before it is closed
                    return
                try:
                    chunk = nxt.result()
                except StopAsyncIteration:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            await stream.aclose()


def _local(method: str, path: str) -> tuple[Any, dict[str, str]] | None:
    """(route, params) when *path* is one the supervisor serves itself; a 405 goes to the workers."""
    for pattern, route in LOCAL:
        m = pattern.match(path)
        if m is not None and route.method == method:
            return route, m.groupdict()
    return None


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_body(receive: Any) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY:
            return None
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: Any, status: int, content_type: str, body: bytes,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode("latin-1")), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FanOutPort:
    """The supervisor's side: the run directory, each worker's control socket, the admin port's thread."""

    def __init__(self, config: ServeConfig, workers: Callable[[], list[tuple[int, int | None]]]) -> None:
        self.config = config
        token = admin_token(config)
        self.rundir = Path(tempfile.mkdtemp(prefix="covet-pipe-admin-"))     # mode 0700
        sock = bind_admin(config)       # here, so a port that is taken fails the start
        app = FanOutApp(token, lambda: [(slot, pid, self.socket_path(slot)) for slot, pid in workers()])
        self.port = AdminPort(app, config, sock=sock)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._main, name="covet-pipe-admin", daemon=True)
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.stopping: asyncio.Event | None = None

    def socket_path(self, slot: int) -> str:
        return str(self.rundir / f"worker-{slot}.sock")

    def worker_config(self, config: ServeConfig, slot: int) -> ServeConfig:
        """*config* for worker *slot*: its admin API on its control socket."""
        return replace(config, admin=f"unix:{self.socket_path(slot)}")

    def _main(self) -> None:
        from covet_pipe.server.listener import new_event_loop
        loop = self.loop = new_event_loop(self.config.loop)

        async def serve() -> None:
            self.stopping = asyncio.Event()
            try:
                await self.port.start()
            finally:
                self.ready.set()
            await self.stopping.wait()
            await self.port.shutdown()
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:        # reported by start() or logged at stop
            self.failure = exc
            self.ready.set()
        finally:
            loop.close()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(30)
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        if self.thread.is_alive() and self.stopping is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)
            self.thread.join(10)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.rundir)
