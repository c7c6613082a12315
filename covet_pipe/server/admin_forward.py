"""Calls to one worker's control socket (the admin API of that worker, over a Unix socket).

The supervisor of ``--workers N --admin`` forwards each admin call with these (see
:mod:`covet_pipe.server.admin_fanout`); an answer is read whole, or chunk by chunk for a stream.
Nothing a worker sends is evaluated: the body is bytes, and JSON is parsed by whoever needs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["Answer", "FORWARD_TIMEOUT", "MAX_ANSWER", "chunks", "forward", "open_request"]

#: seconds a worker gets to answer one forwarded call (a reload may start a sandbox helper)
FORWARD_TIMEOUT = 60.0
MAX_ANSWER = 16 * 1024 * 1024


class Answer:
    """One worker's answer: status, content type, body."""

    def __init__(self, slot: int, pid: int | None, status: int, content_type: str, body: bytes) -> None:
        self.slot, self.pid, self.status, self.content_type, self.body = slot, pid, status, content_type, body

    def document(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return {"error": "the worker's answer is not JSON"}


async def open_request(path: str, method: str, target: str, token: str, body: bytes,
                   accept: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int, dict[str, str]]:
    reader, writer = await asyncio.open_unix_connection(path, limit=MAX_ANSWER)
    head = (f"{method} {target} HTTP/1.1\r\nHost: covet-pipe-worker\r\nAuthorization: Bearer {token}\r\n"
            f"Accept: {accept}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    writer.write(head.encode("latin-1") + body)
    await writer.drain()
    status_line = await reader.readline()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        writer.close()
        raise ConnectionError("no HTTP status line")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return reader, writer, int(parts[1]), headers


async def chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The body, chunk by chunk (chunked transfer coding, or until the worker closes)."""
    if "chunked" not in headers.get("transfer-encoding", ""):
        while chunk := await reader.read(65536):
            yield chunk
        return
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        chunk = await reader.readexactly(size)
        await reader.readline()
        yield chunk


async def forward(slot: int, pid: int | None, path: str, method: str, target: str, token: str,
                  body: bytes) -> Answer:
    """One call to one worker's control socket; 502 when it does not answer."""
    try:
        async with asyncio.timeout(FORWARD_TIMEOUT):
            reader, writer, status, headers = await open_request(path, method, target, token, body, "application/json")
            try:
                if method == "HEAD" or status in (204, 304):
                    data = b""
                elif "content-length" in headers:
                    data = await reader.readexactly(int(headers["content-length"]))
                else:
                    data = b"".join([c async for c in chunks(reader, headers)])
            finally:
                writer.close()
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
        error = json.dumps({"error": f"worker {slot} did not answer ({type(exc).__name__}); it may be restarting"})
        return Answer(slot, pid, 502, "application/json", error.encode())
    return Answer(slot, pid, status, headers.get("content-type", "application/octet-stream"), data)
