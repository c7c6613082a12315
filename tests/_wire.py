"""What the response-semantics suites observe: raw HTTP/1.1 bytes, an ASGI harness, where an app ends.

- :func:`two_requests` sends a request, waits for its head, sends a second one on the same connection and
  returns every byte the server wrote: body bytes a response must not carry show up between the two heads.
- :func:`drive` calls an ASGI app (a pipeline) with a scope that offers extensions uvicorn does not
  (``http.response.push``, ``http.response.debug``, ``http.response.trailers``) and records every message.
- :class:`AppEnd` is an app's ``finally`` seen from outside: did it run, on which thread, inside a running loop.
- :class:`LogCatcher` collects the records of one logger, from whichever thread logs them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests._helpers import WAIT, http_scope

__all__ = ["AppEnd", "Head", "LogCatcher", "SERVER_HEADERS", "drive", "normal_messages", "parse_head",
           "read_until_closed", "request", "two_requests"]

#: headers the server adds itself, which differ between two runs
SERVER_HEADERS = frozenset({"date", "server"})


@dataclass
class Head:
    status: int
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def names(self) -> set[str]:
        return {k for k, _ in self.headers}


def parse_head(data: bytes) -> tuple[Head, bytes]:
    """The response head at the start of *data* and the bytes after it."""
    end = data.find(b"\r\n\r\n")
    assert end >= 0, f"no complete response head in {data[:300]!r}"
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(n.strip().lower(), v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:])]
    return Head(status, headers), data[end + 4:]


def read_until_closed(sock: socket.socket, data: bytes = b"", timeout: float = WAIT) -> tuple[bytes, bool]:
    """Read until the server closes (True) or *timeout* passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data, True
        except socket.timeout:
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def two_requests(port: int, first: bytes, second: bytes) -> tuple[bytes, bool]:
    """Send *first*; once its response head arrived, send *second* (which should ask to close).

    :returns: every byte the server sent on that connection, and whether it closed it.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(first)
        data = b""
        deadline = time.monotonic() + WAIT
        while b"\r\n\r\n" not in data and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
        try:
            sock.sendall(second)
        except (BrokenPipeError, ConnectionResetError):
            return data, True
        return read_until_closed(sock, data)


def request(method: str, path: str, *, close: bool = False, headers: str = "") -> bytes:
    """An HTTP/1.1 request head (no body)."""
    connection = "Connection: close\r\n" if close else ""
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}{connection}\r\n".encode("latin-1")


async def drive(app: Any, path: str = "/", *, extensions: dict[str, Any] | None = None, method: str = "GET",
                body: bytes = b"") -> list[dict]:
    """Call *app* as a server offering *extensions* would; every message it sent, in order.

    ``receive`` gives the request body, then waits until the response is complete and reports
    ``http.disconnect`` (as a server does when the client goes).
    """
    scope = http_scope(path, method=method)
    scope["extensions"] = dict(extensions or {})
    sent: list[dict] = []
    complete = asyncio.Event()
    inbox = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        if inbox:
            return inbox.pop(0)
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    await asyncio.wait_for(app(scope, receive, send), WAIT)
    return sent


#: the ASGI defaults of the keys a message may leave out: a layer that spells one out changes nothing
_DEFAULTS = {
    "http.response.start": {"headers": [], "trailers": False},
    "http.response.body": {"body": b"", "more_body": False},
    "http.response.trailers": {"headers": [], "more_trailers": False},
}


def normal_messages(messages: list[dict]) -> list[dict]:
    """Messages in a comparable form: the keys left to their ASGI defaults spelled out, header lists as
    lists of byte pairs (a layer may rebuild the list, or the tuples, without changing a header)."""
    out = []
    for message in messages:
        m = {**_DEFAULTS.get(message["type"], {}), **message}
        if "headers" in m:
            m["headers"] = [(bytes(k), bytes(v)) for k, v in m["headers"]]
        out.append(m)
    return out


@dataclass
class AppEnd:
    """Where an app's coroutine ended: call :meth:`ended` from its ``finally``.

    ``events`` is one timeline for the app and whatever wraps the pipeline (which sets ``layer_done``
    once the pipeline returned or raised).
    """

    events: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    layer_done: threading.Event = field(default_factory=threading.Event)
    in_loop: bool | None = None
    thread: str | None = None

    def mark(self, event: str) -> None:
        self.events.append(event)

    def ended(self) -> None:
        try:
            asyncio.get_running_loop()
            self.in_loop = True
        except RuntimeError:
            self.in_loop = False
        self.thread = threading.current_thread().name
        self.events.append("app-finally")
        self.done.set()


class LogCatcher(logging.Handler):
    """The records of logger *name* while installed (``with LogCatcher("covet_pipe.plugins") as log:``)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger = logging.getLogger(name)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def __enter__(self) -> "LogCatcher":
        self.previous_level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.previous_level)
