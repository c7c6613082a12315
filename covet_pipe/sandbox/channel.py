"""The IPC channel between the host and a sandboxed helper: length-prefixed msgpack frames.

A frame is a 4-byte big-endian length and a msgpack map. The host numbers its calls (``id``) and
may have many in flight on one channel; the helper answers each with the same ``id``. Nothing a
helper sends is ever unpickled or evaluated: replies are decoded into fixed msgspec types, and a
frame that is too long, undecodable or of the wrong shape ends the helper.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import struct
from typing import Any

import msgspec

__all__ = ["HostChannel", "HelperChannel", "Reply", "ProtocolError", "ChannelClosed", "MAX_FRAME"]

#: the largest frame either side accepts (bytes)
MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side broke the framing or sent a reply of the wrong shape."""


class ChannelClosed(Exception):
    """The channel is closed (the helper exited, or we closed it)."""


class Reply(msgspec.Struct, omit_defaults=True):
    """Every frame a helper may send. Fields a reply does not use stay None."""

    id: int
    ok: bool
    #: request hook: "continue" or "respond"
    action: str | None = None
    status: int | None = None
    #: the full header list after the hook, when it changed them
    headers: list[tuple[bytes, bytes]] | None = None
    body: bytes | None = None
    media_type: str | None = None
    method: str | None = None
    path: str | None = None
    query: bytes | None = None
    #: generic results (init metadata, auth/storage calls): plain data only
    result: Any = None
    #: what went wrong in the helper (never shown to a client)
    error: str | None = None


_encoder = msgspec.msgpack.Encoder()
_reply_decoder = msgspec.msgpack.Decoder(Reply)
_any_decoder = msgspec.msgpack.Decoder()


def encode_frame(obj: Any) -> bytes:
    payload = _encoder.encode(obj)
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes is over the {MAX_FRAME}-byte cap")
    return _LEN.pack(len(payload)) + payload


class HostChannel:
    """The host's end: send calls, match replies by id, time out, fail everything on close."""

    def __init__(self, sock: socket.socket, *, max_frame: int = MAX_FRAME) -> None:
        self._sock = sock
        self._max = max_frame
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        #: why the channel closed (None while open)
        self.closed_reason: str | None = None

    async def start(self) -> None:
        self._reader, self._writer = await asyncio.open_unix_connection(sock=self._sock, limit=self._max + 8)
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def call(self, op: str, timeout: float, **fields: Any) -> Reply:
        """Send one call and wait for its reply.

        :raises asyncio.TimeoutError: past *timeout* (the caller kills the helper).
        :raises ChannelClosed: the helper went away before answering.
        """
        if self.closed_reason is not None or self._writer is None:
            raise ChannelClosed(self.closed_reason or "not started")
        rid = next(self._ids)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            self._writer.write(encode_frame({"id": rid, "op": op, **fields}))
            await asyncio.wait_for(fut, timeout)
            return fut.result()
        finally:
            self._pending.pop(rid, None)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "the helper closed the channel"
        try:
            while True:
                head = await self._reader.readexactly(4)
                (size,) = _LEN.unpack(head)
                if size > self._max:
                    reason = f"the helper sent a frame of {size} bytes (cap {self._max})"
                    return
                payload = await self._reader.readexactly(size)
                try:
                    reply = _reply_decoder.decode(payload)
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                    # ValueError covers the UnicodeDecodeError msgspec raises on some bad input.
                    reason = f"the helper sent a malformed frame ({exc})"
                    return
                fut = self._pending.get(reply.id)
                if fut is None:
                    reason = f"the helper answered call {reply.id}, which is not in flight"
                    return
                if not fut.done():
                    fut.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            reason = "the channel was closed by the host"
            raise
        finally:
            self._fail_all(reason)

    def _fail_all(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ChannelClosed(reason))
        if self._writer is not None:
            self._writer.close()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._fail_all(self.closed_reason or "closed by the host")


class HelperChannel:
    """The helper's end: blocking reads of calls, writes of replies (no event loop needed)."""

    def __init__(self, fd: int, *, max_frame: int = MAX_FRAME) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(True)
        self._max = max_frame

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self._sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ChannelClosed("the host closed the channel")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> dict[str, Any]:
        (size,) = _LEN.unpack(self._read_exact(4))
        if size > self._max:
            raise ProtocolError(f"the host sent a frame of {size} bytes (cap {self._max})")
        message = _any_decoder.decode(self._read_exact(size))
        if not isinstance(message, dict) or not isinstance(message.get("id"), int):
            raise ProtocolError("the host sent a frame that is not a call")
        return message

    def send(self, reply: dict[str, Any]) -> None:
        self._sock.sendall(encode_frame(reply))
