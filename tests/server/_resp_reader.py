"""A RESP2/RESP3 reply reader: the client side of the wire format (tests and tools use it)."""

from __future__ import annotations

from typing import Any

from covet_pipe.server.resp.codec import RespError, RespProtocolError

__all__ = ["ReplyReader", "RespError", "Push", "Verbatim"]


class Push(list):  # type: ignore[type-arg]
    """A RESP3 push (``>``)."""


class Verbatim(bytes):
    """A RESP3 verbatim string (``=``); ``.format`` is its three-letter type."""
    format: bytes = b"txt"


class _Incomplete(Exception):
    pass


class ReplyReader:
    """Any RESP2/RESP3 value from a byte stream: ``feed(data)`` then ``get()`` until it returns ``...``.

    Nulls are None, simple strings ``str``, bulk strings ``bytes``, errors :class:`RespError`
    instances (returned, not raised), maps ``dict``, sets ``set``, attributes are skipped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def get(self) -> Any:
        """The next complete value, or ``...`` (Ellipsis) when more bytes are needed."""
        try:
            value, pos = self._value(bytes(self._buf), 0)
        except _Incomplete:
            return ...
        del self._buf[:pos]
        return value

    def _line(self, buf: bytes, pos: int) -> tuple[bytes, int]:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return buf[pos:end], end + 2

    def _value(self, buf: bytes, pos: int) -> tuple[Any, int]:
        if pos >= len(buf):
            raise _Incomplete
        kind = buf[pos:pos + 1]
        line, pos = self._line(buf, pos + 1)
        if kind == b"+":
            return line.decode("utf-8", "replace"), pos
        if kind == b"-":
            return RespError(line.decode("utf-8", "replace")), pos
        if kind == b":":
            return int(line), pos
        if kind == b"_":
            return None, pos
        if kind == b"#":
            return line == b"t", pos
        if kind == b",":
            return float(line), pos
        if kind == b"(":
            return int(line), pos
        if kind in (b"$", b"!", b"="):
            size = int(line)
            if size < 0:
                return None, pos
            if pos + size + 2 > len(buf):
                raise _Incomplete
            data = buf[pos:pos + size]
            pos += size + 2
            if kind == b"!":
                return RespError(data.decode("utf-8", "replace")), pos
            if kind == b"=":
                v = Verbatim(data[4:])
                v.format = data[:3]
                return v, pos
            return data, pos
        if kind in (b"*", b">", b"~", b"%", b"|"):
            count = int(line)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count * 2 if kind in (b"%", b"|") else count):
                item, pos = self._value(buf, pos)
                items.append(item)
            if kind == b"%":
                return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}, pos
            if kind == b"|":
                return self._value(buf, pos)       # attributes annotate the next value
            if kind == b"~":
                return {_hashable(i) for i in items}, pos
            return (Push(items) if kind == b">" else items), pos
        raise RespProtocolError(f"Protocol error: unknown reply type {kind!r}")


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
