"""Shared test fixtures: a real uvicorn on 127.0.0.1, and small ASGI apps."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any, Iterator

import pytest
import uvicorn
from tests._dist import dist  # noqa: F401 (the session fixture: an installed covet-pipe wheel and sdist)
from tests._helpers import lifespan

#: tests/scale holds the long cross-process checks of `make scale` (COVET_PIPE_SCALE=1); not collected otherwise
collect_ignore = [] if os.environ.get("COVET_PIPE_SCALE") == "1" else ["scale"]


class Served:
    """A uvicorn server running an app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Any, **options: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        options.setdefault("log_level", "warning")
        options.setdefault("lifespan", "on")
        options.setdefault("loop", "asyncio")
        self.config = uvicorn.Config(app, **options)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.loop: Any = None

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start within 20 s")
            time.sleep(0.01)
        self.loop = self.server.servers[0].get_loop()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    """``with serve(app) as s: httpx.get(s.url)``: a real uvicorn on loopback."""
    started: list[Served] = []

    @contextlib.contextmanager
    def _serve(app: Any, **options: Any) -> Iterator[Served]:
        with Served(app, **options) as s:
            started.append(s)
            yield s

    yield _serve


async def text_app(scope: dict, receive: Any, send: Any) -> None:
    """200 text/plain echoing method, path and the x-seen header; handles lifespan."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = dict(scope["headers"])
    body = f"{scope['method']} {scope['path']} seen={headers.get(b'x-seen', b'').decode()}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
