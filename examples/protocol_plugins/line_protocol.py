"""A third-party protocol plugin in one file: 'SAY <text>' lines, answered through the middleware chain.

    covet-pipe serve examples.app:app --plugins examples/protocol_plugins
    printf 'SAY hello\\n' | nc 127.0.0.1 8000          # -> hello

Every line runs the middleware plugins that list "line" in their ``protocols``
(see ``NoSecrets`` below), exactly as HTTP requests run the ``http`` ones.
"""

from __future__ import annotations

import asyncio
from typing import Any

from covet_pipe import MiddlewareAction, MiddlewarePlugin, ProtocolPlugin
from covet_pipe.protocol import MATCH, NEED_MORE, NO

MAX_LINE = 4096


class LineConnection(asyncio.Protocol):
    """One connection: lines in, one answer line per request line, in order."""

    def __init__(self, conn: Any, pipeline: Any) -> None:
        self.conn = conn
        self.pipeline = pipeline
        self.buf = b""
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport: Any = None
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.queue.put_nowait(line.rstrip(b"\r"))
        if len(self.buf) > MAX_LINE:
            self.transport.write(b"ERR line too long\n")
            self.transport.close()

    def eof_received(self) -> bool | None:
        self.queue.put_nowait(None)
        return True          # keep the write side open until the answers are out

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _serve(self) -> None:
        while (line := await self.queue.get()) is not None:
            self.transport.write(await self._answer(line))
        self.transport.close()

    async def _answer(self, line: bytes) -> bytes:
        verb, _, text = line.partition(b" ")
        scope = {"type": "line", "method": verb.decode("latin-1").upper(), "path": text.decode("latin-1"),
                 "raw_path": text, "query_string": b"", "headers": [], "client": self.conn.client,
                 "server": self.conn.server}
        out: dict[str, Any] = {}

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            else:
                out["body"] = out.get("body", b"") + message.get("body", b"")

        await self.pipeline(scope, receive, send)
        if out.get("status") != 200:
            return b"ERR " + str(out.get("status")).encode() + b" " + out.get("body", b"") + b"\n"
        return out.get("body", b"")


class LineEcho(ProtocolPlugin):
    """Answers 'SAY <text>' lines, through the middleware chain."""

    name = "line_echo"
    version = "1.0.0"
    protocol_name = "line"
    priority = 300                      # after HTTP (100) and RESP (200)

    def detect(self, data: bytes) -> str:
        if data[:4] == b"SAY ":
            return MATCH
        return NEED_MORE if b"SAY ".startswith(data) else NO

    def connection_protocol(self, conn: Any, server: Any) -> asyncio.Protocol:
        return LineConnection(conn, server.pipeline_for(self.answer))

    async def answer(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["method"] != "SAY":
            await send({"type": "http.response.start", "status": 400, "headers": []})
            await send({"type": "http.response.body", "body": b"unknown verb"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode("latin-1") + b"\n"})


class NoSecrets(MiddlewarePlugin):
    """A middleware that guards the line protocol (and HTTP): refuses anything mentioning 'secret'."""

    name = "no_secrets"
    version = "1.0.0"
    protocols = {"http", "line"}

    def process_request(self, request: Any, ctx: Any) -> Any:
        if "secret" in request.path:
            return MiddlewareAction.reject(403, f"no secrets over {ctx.protocol}")
        return None


def create_plugin(config: Any) -> list[Any]:
    return [LineEcho(), NoSecrets()]
