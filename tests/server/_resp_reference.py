"""The pure-Python RESP command parser covet-pipe shipped before the compiled one (``_resp.pyx``),
kept as the reference of tests/server/test_resp_parser_diff.py: both get the same bytes, split the same
way, and must give the same commands and the same protocol error."""

from __future__ import annotations

from covet_pipe.server.resp.codec import split_inline

MAX_INLINE = 64 * 1024
MAX_BULK = 16 * 1024 * 1024
MAX_ARRAY = 1024 * 1024


class RespProtocolError(ValueError):
    """Bytes that are not a valid RESP command; the message is redis's (``Protocol error: ...``)."""


def _strict_int(line: bytes) -> int | None:
    """A base-10 integer as redis's string2ll accepts it (no spaces, '+' or '_'), or None."""
    if line[:1] == b"-":
        return -int(line[1:]) if line[1:].isdigit() and len(line) < 21 else None
    return int(line) if line.isdigit() and len(line) < 20 else None


class ReferenceParser:
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
