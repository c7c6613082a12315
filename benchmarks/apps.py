"""The apps and middleware stacks the benchmarks compare (shared by bench_layers, e2e_wrk, test_micro).

Every contender wraps the same inner ASGI app (``hello``), which answers ``http.response.start`` and
``http.response.body``. The module attributes ``bare``, ``covet10`` and ``starlette10`` (built on first access) are what
``uvicorn --app-dir benchmarks apps:<name>`` serves in the end-to-end suite.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

BODY = b"Hello, world!"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(BODY)).encode())],
}
END = {"type": "http.response.body", "body": BODY, "more_body": False}


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def hello(scope: dict, receive: Any, send: Any) -> None:
    """The inner app: a fixed 200 text/plain answer (the same for every contender)."""
    if scope["type"] == "http":
        await send(START)
        await send(END)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


def http_scope() -> dict:
    """A fixed GET scope with 10 request headers, as uvicorn+httptools builds it."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"wrk/4.2"),
        (b"accept", b"*/*"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b"en-US,en;q=0.9"),
        (b"connection", b"keep-alive"),
        (b"cache-control", b"no-cache"),
        (b"x-request-id", b"6f1c2a0e-bb4e-4a3c-9d1e-0c7b8c3a9e55"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"cookie", b"session=abc123; theme=dark"),
    ]
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 51000), "scheme": "http",
        "method": "GET", "root_path": "", "path": "/hello", "raw_path": b"/hello",
        "query_string": b"", "headers": headers, "state": {},
    }


# -- covet-pipe ---------------------------------------------------------------------------------


def sync_plugins(n: int) -> list:
    """N no-op hook-style plugins with sync request and response hooks, distinct classes and names."""
    from covet_pipe import MiddlewarePlugin

    out = []
    for i in range(n):
        def process_request(self, request, ctx):  # noqa: ARG001
            return None

        def process_response(self, response, ctx):  # noqa: ARG001
            return None

        cls = type(f"NoopSync{i:02d}", (MiddlewarePlugin,), {
            "name": f"noop_sync_{i:02d}", "version": "1.0.0", "priority": 100 + i,
            "process_request": process_request, "process_response": process_response,
        })
        out.append(cls())
    return out


def async_plugins(n: int) -> list:
    """N no-op hook-style plugins with ``async def`` request and response hooks."""
    from covet_pipe import MiddlewarePlugin

    out = []
    for i in range(n):
        async def process_request(self, request, ctx):  # noqa: ARG001
            return None

        async def process_response(self, response, ctx):  # noqa: ARG001
            return None

        cls = type(f"NoopAsync{i:02d}", (MiddlewarePlugin,), {
            "name": f"noop_async_{i:02d}", "version": "1.0.0", "priority": 100 + i,
            "process_request": process_request, "process_response": process_response,
        })
        out.append(cls())
    return out


def call_next_plugins(n: int) -> list:
    """N no-op call_next-style plugins (``return await call_next(request)``)."""
    from covet_pipe import MiddlewarePlugin

    out = []
    for i in range(n):
        async def process_request(self, request, call_next):  # noqa: ARG001
            return await call_next(request)

        cls = type(f"NoopCallNext{i:02d}", (MiddlewarePlugin,), {
            "name": f"noop_call_next_{i:02d}", "version": "1.0.0", "priority": 100 + i,
            "process_request": process_request,
        })
        out.append(cls())
    return out


def covet(app: Any, plugins: list, *, start: bool = True) -> Any:
    """``wrap(app, manager)`` with *plugins* registered; started now when *start* (no loop running)."""
    from covet_pipe import PluginManager, wrap

    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    if start:
        asyncio.run(manager.initialize_all())
    return wrap(app, manager)


# -- Starlette ----------------------------------------------------------------------------------


class SendWrapLayer:
    """Starlette's documented pure-ASGI middleware pattern: wrap ``send`` with a closure."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: dict) -> None:
            await send(message)

        await self.app(scope, receive, send_wrapper)


def starlette_asgi(app: Any, n: int) -> Any:
    """N pure-ASGI send-wrapping layers, stacked by Starlette's own ``Middleware`` helper."""
    from starlette.middleware import Middleware

    for mw in reversed([Middleware(SendWrapLayer) for _ in range(n)]):
        cls, args, kwargs = mw
        app = cls(app, *args, **kwargs)
    return app


def starlette_base(app: Any, n: int) -> Any:
    """N no-op ``BaseHTTPMiddleware`` layers (``return await call_next(request)``)."""
    from starlette.middleware.base import BaseHTTPMiddleware

    class Noop(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            return await call_next(request)

    for _ in range(n):
        app = Noop(app)
    return app


# -- pluggy -------------------------------------------------------------------------------------


def pluggy_app(app: Any, n: int) -> Any:
    """One ASGI layer that calls ``pm.hook.process_request`` before the app and
    ``pm.hook.process_response`` at the response start, with N no-op hookimpls each."""
    import pluggy

    spec = pluggy.HookspecMarker("benchpipe")
    impl = pluggy.HookimplMarker("benchpipe")

    class Spec:
        @spec
        def process_request(self, scope):
            """Request hook."""

        @spec
        def process_response(self, scope, message):
            """Response hook."""

    pm = pluggy.PluginManager("benchpipe")
    pm.add_hookspecs(Spec)
    for i in range(n):
        def process_request(self, scope):  # noqa: ARG001
            return None

        def process_response(self, scope, message):  # noqa: ARG001
            return None

        cls = type(f"PluggyNoop{i:02d}", (), {
            "process_request": impl(process_request), "process_response": impl(process_response),
        })
        pm.register(cls(), name=f"noop_{i:02d}")
    hook = pm.hook

    async def pipeline(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        hook.process_request(scope=scope)

        async def send_wrapper(message: dict) -> None:
            if message["type"] == "http.response.start":
                hook.process_response(scope=scope, message=message)
            await send(message)

        await app(scope, receive, send_wrapper)

    return pipeline


# -- Falcon -------------------------------------------------------------------------------------


def falcon_app(n: int) -> Any:
    """``falcon.asgi.App`` with N async hook-style middleware (process_request/process_response)
    in front of a responder that answers like ``hello``."""
    import falcon
    import falcon.asgi

    mws = []
    for i in range(n):
        async def process_request(self, req, resp):  # noqa: ARG001
            return None

        async def process_response(self, req, resp, resource, req_succeeded):  # noqa: ARG001
            return None

        cls = type(f"FalconNoop{i:02d}", (), {
            "process_request": process_request, "process_response": process_response,
        })
        mws.append(cls())

    class Hello:
        async def on_get(self, req, resp):  # noqa: ARG002
            resp.content_type = falcon.MEDIA_TEXT
            resp.data = BODY

    app = falcon.asgi.App(middleware=mws)
    app.add_route("/hello", Hello())
    return app


# -- gzip (benchmarks/bench_gzip.py) -------------------------------------------------------------


def _page_body(size: int = 64 * 1024) -> bytes:
    """*size* bytes of text that compresses as prose does (words from a fixed vocabulary, seeded)."""
    import random

    rng = random.Random(0)
    vocab = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
             for _ in range(2000)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(vocab) + (b".\n" if rng.random() < 0.07 else b" ")
    return bytes(out[:size])


#: the 64 KiB response of the gzip benchmark
PAGE = _page_body()
_PAGE_LENGTH = str(len(PAGE)).encode()


async def page(scope: dict, receive: Any, send: Any) -> None:
    """A 64 KiB text/plain answer in one body message (as Starlette's PlainTextResponse sends it).

    Its messages are new for each request: Starlette's GZipMiddleware edits the messages it is
    sent in place (its headers list, its body), so shared ones would be compressed only once.
    """
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", _PAGE_LENGTH)]})
        await send({"type": "http.response.body", "body": PAGE, "more_body": False})
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


def covet_gzip(level: int) -> Any:
    from covet_pipe.builtin import GZip

    return covet(page, [GZip(compresslevel=level)], start=False)


def starlette_gzip(level: int) -> Any:
    from starlette.middleware.gzip import GZipMiddleware

    return GZipMiddleware(page, compresslevel=level)


# -- what uvicorn serves (benchmarks/e2e_wrk.py) ------------------------------------------------

E2E_LAYERS = 10

_SERVED: dict[str, Callable[[], Any]] = {
    #: the inner app alone
    "bare": lambda: hello,
    #: the inner app behind 10 no-op sync covet-pipe plugins (started by lifespan / the first request)
    "covet10": lambda: covet(hello, sync_plugins(E2E_LAYERS), start=False),
    #: the inner app behind 10 Starlette pure-ASGI send-wrapping layers
    "starlette10": lambda: starlette_asgi(hello, E2E_LAYERS),
    #: benchmarks/bench_gzip.py: the 64 KiB page alone, behind covet-pipe's GZip, behind Starlette's
    "gzip_bare": lambda: page,
    "gzip_covet9": lambda: covet_gzip(9),
    "gzip_starlette9": lambda: starlette_gzip(9),
    "gzip_covet1": lambda: covet_gzip(1),
    "gzip_starlette1": lambda: starlette_gzip(1),
}


def __getattr__(name: str) -> Any:
    # Built on first access, so that importing this module for one contender stays cheap.
    if name in _SERVED:
        value = _SERVED[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
