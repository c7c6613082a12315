"""RESP2/RESP3 wire format: an incremental, bounded command parser and the encoders.

The server side needs two things: :class:`CommandParser` turns a client's bytes into commands (arrays of
bulk strings, or telnet-style inline lines), and the ``encode_*`` functions build replies for the
connection's protocol version (2 or 3; RESP3 only differs where a reply is a null, a map, a boolean or a
double; tests/server/_resp_reader.py reads replies for the tests).

Malformed or oversized input raises :class:`RespProtocolError` with redis's own wording
(``Protocol error: invalid bulk length`` ...); the connection answers ``-ERR <message>`` and closes,
as redis does. No regular expressions: ``bytes.find`` and slicing only.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CommandParser", "RespProtocolError", "RespError",
    "encode", "encode_simple", "encode_error", "encode_int", "encode_bulk", "encode_null",
    "encode_array", "encode_map", "encode_bool", "encode_double", "split_inline",
    "OK", "PONG", "NULL2", "NULL3",
]

#: redis's PROTO_INLINE_MAX_SIZE: the longest inline command and the longest `*N`/`$N` line
MAX_INLINE = 64 * 1024
#: default bounds (redis: 512 MB bulk, 2^31 elements; an embedded server holds much less)
MAX_BULK = 16 * 1024 * 1024
MAX_ARRAY = 1024 * 1024

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NULL2 = b"$-1\r\n"
NULL3 = b"_\r\n"
_INTS = [b":%d\r\n" % i for i in range(-2, 256)]


class RespProtocolError(ValueError):
    """Bytes that are not a valid RESP command; the message is redis's (``Protocol error: ...``)."""


def _strict_int(line: bytes) -> int | None:
    """A base-10 integer as redis's string2ll accepts it (no spaces, '+' or '_'), or None."""
    if line[:1] == b"-":
        return -int(line[1:]) if line[1:].isdigit() and len(line) < 21 else None
    return int(line) if line.isdigit() and len(line) < 20 else None


class CommandParser:
    """Client bytes into commands (lists of ``bytes``), incrementally and within bounds.

    ``feed(data)`` returns the commands completed so far, in order. A malformed command stops the
    parse: the commands before it are returned, and :attr:`error` holds the reason (the connection
    answers them, then the error, then closes). Partial input is kept, and re-parsing starts where the
    last complete argument ended, so a large value arriving in small reads costs linear time.

    :param max_bulk: the longest argument (``$N``), bytes.
    :param max_array: the most arguments in one command (``*N``).
    :param max_inline: the longest inline command or ``*N``/``$N`` header line, bytes.
    """

    __slots__ = ("max_bulk", "max_array", "max_inline", "error", "_pending", "_need", "_args", "_left")

    def __init__(self, max_bulk: int = MAX_BULK, max_array: int = MAX_ARRAY,
                 max_inline: int = MAX_INLINE) -> None:
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_inline = max_inline
        #: the protocol error that stopped parsing (then feed() returns nothing more)
        self.error: str | None = None
        self._pending = bytearray()     # bytes not consumed yet
        self._need = 0                  # len(_pending) needed before a parse can progress
        self._args: list[bytes] | None = None   # the arguments of a command in progress
        self._left = 0                  # how many of its arguments are still to come

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a command."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[list[bytes]]:
        """Parse *data* (appended to what was held back); returns the completed commands."""
        if self.error is not None:
            return []
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return []
            buf = bytes(self._pending)
            self._pending.clear()
        else:
            buf = data
        out: list[list[bytes]] = []
        try:
            self._parse(buf, out)
        except RespProtocolError as exc:
            self.error = str(exc)
            self._pending.clear()
            self._args = None
        return out

    def _parse(self, buf: bytes, out: list[list[bytes]]) -> None:
        n = len(buf)
        pos = 0
        args = self._args
        left = self._left
        self._args = None               # _hold() puts them back if this command stays incomplete
        self._left = 0
        while True:
            if args is None:
                if pos >= n:
                    return
                if buf[pos] != 42:           # not '*': an inline command
                    end = buf.find(b"\n", pos)
                    if end < 0:
                        if n - pos > self.max_inline:
                            raise RespProtocolError("Protocol error: too big inline request")
                        self._hold(buf, pos, n - pos + 1, None, 0)
                        return
                    if end - pos > self.max_inline:
                        raise RespProtocolError("Protocol error: too big inline request")
                    words = split_inline(buf[pos:end])
                    if words is None:
                        raise RespProtocolError("Protocol error: unbalanced quotes in request")
                    pos = end + 1
                    if words:
                        out.append(words)
                    continue
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > self.max_inline:
                        raise RespProtocolError("Protocol error: too big mbulk count string")
                    self._hold(buf, pos, n - pos + 1, None, 0)
                    return
                count = _strict_int(buf[pos + 1:end])
                if count is None or count > self.max_array:
                    raise RespProtocolError("Protocol error: invalid multibulk length")
                pos = end + 2
                if count <= 0:                # redis ignores empty multibulks
                    continue
                args = []
                left = count
            # the arguments of a command: $len\r\n<bytes>\r\n each
            while left:
                if pos >= n:
                    self._hold(buf, pos, 1, args, left)
                    return
                if buf[pos] != 36:           # '$'
                    raise RespProtocolError("Protocol error: expected '$', got '%s'"
                                            % chr(buf[pos]))
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if n - pos > self.max_inline:
                        raise RespProtocolError("Protocol error: too big bulk count string")
                    self._hold(buf, pos, n - pos + 1, args, left)
                    return
                digits = buf[pos + 1:end]       # a length is never negative: digits only
                if not digits.isdigit() or len(digits) > 18:
                    raise RespProtocolError("Protocol error: invalid bulk length")
                size = int(digits)
                if size > self.max_bulk:
                    raise RespProtocolError("Protocol error: invalid bulk length")
                start = end + 2
                stop = start + size
                if stop + 2 > n:
                    self._hold(buf, pos, stop + 2 - pos, args, left)
                    return
                # like redis, the two bytes after the data are skipped unchecked (CRLF by contract)
                args.append(buf[start:stop])
                pos = stop + 2
                left -= 1
            out.append(args)
            args = None

    def _hold(self, buf: bytes, pos: int, need: int, args: list[bytes] | None, left: int) -> None:
        self._pending += memoryview(buf)[pos:]
        self._need = need
        self._args = args
        self._left = left


_SPACE = frozenset(b" \t\r\n\v\f")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline command the way redis's sdssplitargs does; None for unbalanced quotes.

    Words are separated by whitespace; ``"..."`` takes ``\\n \\r \\t \\b \\a \\\\ \\" \\xHH``
    escapes, ``'...'`` only ``\\'``; a closing quote must be followed by a space or the end.
    """
    if b'"' not in line and b"'" not in line:
        return line.split()
    out: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return out
        word = bytearray()
        quote = 0
        while True:
            if i >= n:
                if quote:
                    return None
                break
            c = line[i]
            if quote == 34:                      # inside "..."
                if c == 92 and i + 3 < n and line[i + 1] == 120 and line[i + 2] in _HEX \
                        and line[i + 3] in _HEX:
                    word.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    word.append(_ESCAPES.get(line[i], line[i]))
                elif c == 34:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    quote = 0
                    i += 1
                    break
                else:
                    word.append(c)
            elif quote == 39:                    # inside '...'
                if c == 92 and i + 1 < n and line[i + 1] == 39:
                    i += 1
                    word.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _SPACE:
                        return None
                    quote = 0
                    i += 1
                    break
                else:
                    word.append(c)
            elif c in _SPACE:
                break
            elif c == 34 or c == 39:
                quote = c
            else:
                word.append(c)
            i += 1
        out.append(bytes(word))


# -- encoders (server → client) ---------------------------------------------------------------

def encode_simple(text: str | bytes) -> bytes:
    """``+text``; CR and LF become spaces (a status line cannot hold them)."""
    b = text.encode("utf-8") if isinstance(text, str) else text
    return b"+" + b.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def encode_error(text: str | bytes) -> bytes:
    """``-ERR ...`` style error line; *text* starts with its code (``ERR``, ``NOAUTH`` ...)."""
    b = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return b"-" + b.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def encode_int(value: int) -> bytes:
    if -2 <= value < 256:
        return _INTS[value + 2]
    return b":%d\r\n" % value


def encode_bulk(value: bytes | str) -> bytes:
    b = value.encode("utf-8") if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(b), b)


def encode_null(proto: int) -> bytes:
    """The null bulk string of RESP2 (``$-1``), RESP3's null (``_``)."""
    return NULL3 if proto == 3 else NULL2


def encode_array(items: list[bytes]) -> bytes:
    """An array of already encoded *items*."""
    return b"*%d\r\n" % len(items) + b"".join(items)


def encode_map(pairs: list[tuple[bytes, bytes]], proto: int) -> bytes:
    """A map of already encoded keys and values: ``%N`` in RESP3, a flat array in RESP2."""
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join(k + v for k, v in pairs)


def encode_bool(value: bool, proto: int) -> bytes:
    """``#t``/``#f`` in RESP3, ``:1``/``:0`` in RESP2."""
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return _INTS[3] if value else _INTS[2]


def encode_double(value: float, proto: int) -> bytes:
    """``,1.5`` in RESP3, a bulk string in RESP2 (as redis sends ZSCORE)."""
    if value != value:
        text = b"nan"
    elif value in (float("inf"), float("-inf")):
        text = b"inf" if value > 0 else b"-inf"
    else:
        text = repr(float(value)).encode("ascii")
        if text.endswith(b".0"):
            text = text[:-2]
    return b"," + text + b"\r\n" if proto == 3 else encode_bulk(text)


class RespError(Exception):
    """An error reply (``-ERR ...``, ``!<len>`` in RESP3); ``str()`` is its text."""


def encode(value: Any, proto: int = 2) -> bytes:
    """Any of None, bool, int, float, bytes, str, list/tuple, dict, :class:`RespError` as a reply."""
    if value is None:
        return encode_null(proto)
    if isinstance(value, bool):
        return encode_bool(value, proto)
    if isinstance(value, int):
        return encode_int(value)
    if isinstance(value, float):
        return encode_double(value, proto)
    if isinstance(value, (bytes, bytearray, str)):
        return encode_bulk(bytes(value) if isinstance(value, bytearray) else value)
    if isinstance(value, RespError):
        return encode_error(str(value))
    if isinstance(value, (list, tuple)):
        return encode_array([encode(v, proto) for v in value])
    if isinstance(value, dict):
        return encode_map([(encode(k, proto), encode(v, proto)) for k, v in value.items()], proto)
    raise TypeError(f"encode(): no RESP form for {type(value).__name__} ({value!r})")
