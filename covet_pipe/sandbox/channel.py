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
from typing import Any, Callable

import msgspec

__all__ = ["HostChannel", "HelperChannel", "Reply", "FramingError", "ChannelClosed", "MAX_FRAME"]

#: the largest frame either side accepts (bytes)
MAX_FRAME = 4 * 1024 * 1024
_LEN = struct.Struct(">I")


class FramingError(Exception):
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
        raise FramingError(f"frame of {len(payload)} bytes is over the {MAX_FRAME}-byte cap")
    return _LEN.pack(len(payload)) + payload


def _expire(fut: asyncio.Future[Reply]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())


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
        #: calls whose caller gave up (timed out or was cancelled): a late reply to one is dropped
        self._abandoned: set[int] = set()
        #: why the channel closed (None while open)
        self.closed_reason: str | None = None
        #: True when the helper broke the protocol (as opposed to closing the channel)
        self.broken = False
        #: called once, as ``on_close(reason, broken)``, when the helper's side ends the channel
        self.on_close: Callable[[str, bool], None] | None = None

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
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._pending[rid] = fut
        # One timer per call, on the reply's own future (asyncio.wait_for costs a second future and
        # a callback more per call).
        timer = loop.call_later(timeout, _expire, fut)
        try:
            self._writer.write(encode_frame({"id": rid, "op": op, **fields}))
            return await fut
        except (asyncio.TimeoutError, asyncio.CancelledError):
            # The helper may still answer: that reply is expected, not a protocol violation.
            if self.closed_reason is None:
                self._abandoned.add(rid)
            raise
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "the helper closed the channel"
        broken = False
        try:
            while True:
                head = await self._reader.readexactly(4)
                (size,) = _LEN.unpack(head)
                if size > self._max:
                    reason, broken = f"the helper sent a frame of {size} bytes, over the cap of {self._max}", True
                    return
                payload = await self._reader.readexactly(size)
                try:
                    reply = _reply_decoder.decode(payload)
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                    # ValueError covers the UnicodeDecodeError msgspec raises on some bad input.
                    reason, broken = f"the helper sent a malformed frame ({exc})", True
                    return
                fut = self._pending.get(reply.id)
                if fut is None:
                    if reply.id in self._abandoned:
                        self._abandoned.discard(reply.id)
                        continue
                    reason, broken = f"the helper answered call {reply.id}, which is not in flight", True
                    return
                if not fut.done():
                    fut.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            reason = "the channel was closed by the host"
            raise
        finally:
            notify = self.closed_reason is None and reason != "the channel was closed by the host"
            self.broken = self.broken or broken
            self._fail_all(reason)
            if notify and self.on_close is not None:
                self.on_close(reason, broken)

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

    def forsake(self, because: str) -> None:
        """Close the socket of a channel whose event loop has ended (nothing can be awaited there)."""
        self.closed_reason = self.closed_reason or because
        self._pending.clear()
        self._writer = None
        self._sock.close()


class HelperChannel:
    """The helper's end: blocking reads of calls, writes of replies (no event loop needed)."""

    def __init__(self, fd: int, *, max_frame: int = MAX_FRAME) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(True)
        self._max = max_frame
        #: bytes received and not yet taken: one recv() usually brings a whole frame, or several
        self._buf = bytearray()

    def _fill(self, n: int) -> None:
        buf = self._buf
        while len(buf) < n:
            chunk = self._sock.recv(max(n - len(buf), 1 << 16))
            if not chunk:
                raise ChannelClosed("the host closed the channel")
            buf += chunk

    def receive(self) -> dict[str, Any]:
        buf = self._buf
        if len(buf) < 4:
            self._fill(4)
        (size,) = _LEN.unpack_from(buf)
        if size > self._max:
            raise FramingError(f"the host sent a frame of {size} bytes, over the cap of {self._max}")
        if len(buf) < 4 + size:
            self._fill(4 + size)
        payload = bytes(buf[4:4 + size])
        del buf[:4 + size]
        message = _any_decoder.decode(payload)
        if not isinstance(message, dict) or not isinstance(message.get("id"), int):
            raise FramingError("the host sent a frame that is not a call")
        return message

    def send(self, reply: dict[str, Any]) -> None:
        self._sock.sendall(encode_frame(reply))
