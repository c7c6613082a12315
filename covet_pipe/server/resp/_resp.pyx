# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled RESP2/RESP3 codec behind covet_pipe.server.resp.codec (which documents it).

:class:`CommandParser` walks the client's bytes with C pointers (``memchr`` for line ends, digits
read in place) and makes one ``bytes`` object per argument; the encoders build replies with
``bytes`` formatting. Behaviour and error texts are codec.py's (tests/server/test_resp_codec.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memchr

#: redis's PROTO_INLINE_MAX_SIZE: the longest inline command and the longest `*N`/`$N` line
MAX_INLINE = 64 * 1024
#: default bounds (redis: 512 MB bulk, 2^31 elements; an embedded server holds much less)
MAX_BULK = 16 * 1024 * 1024
MAX_ARRAY = 1024 * 1024

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
NULL2 = b"$-1\r\n"
NULL3 = b"_\r\n"
cdef list _INTS = [b":%d\r\n" % i for i in range(-2, 256)]


class RespProtocolError(ValueError):
    """Bytes that are not a valid RESP command; the message is redis's (``Protocol error: ...``)."""


class RespError(Exception):
    """An error reply (``-ERR ...``, ``!<len>`` in RESP3); ``str()`` is its text."""


cdef inline Py_ssize_t _find_lf(const char* p, Py_ssize_t pos, Py_ssize_t n) noexcept:
    cdef const char* hit = <const char*>memchr(p + pos, 10, n - pos)
    return -1 if hit == NULL else hit - p


cdef inline Py_ssize_t _find_crlf(const char* p, Py_ssize_t pos, Py_ssize_t n) noexcept:
    cdef const char* hit
    while pos < n - 1:
        hit = <const char*>memchr(p + pos, 13, n - 1 - pos)
        if hit == NULL:
            return -1
        if hit[1] == 10:
            return hit - p
        pos = hit - p + 1
    return -1


cdef enum:
    _BAD = 0
    _NEG = 1       # a negative count (or zero): ignored, as redis ignores empty multibulks
    _BIG = 2       # more digits' worth than any bound
    _OK = 3


cdef int _count(const char* p, Py_ssize_t start, Py_ssize_t end, long long* out) noexcept:
    """A multibulk count as codec's _strict_int reads it: digits, or '-' and digits, < 20 digits."""
    cdef Py_ssize_t i
    cdef bint neg = start < end and p[start] == 45       # '-'
    cdef long long v = 0
    if neg:
        start += 1
    if start >= end or end - start > 19:
        return _BAD
    for i in range(start, end):
        if p[i] < 48 or p[i] > 57:
            return _BAD
    if neg:
        return _NEG
    if end - start > 18:
        return _BIG
    for i in range(start, end):
        v = v * 10 + (p[i] - 48)
    out[0] = v
    return _NEG if v == 0 else _OK


cdef class CommandParser:
    """Client bytes into commands (lists of ``bytes``), incrementally and within bounds (see codec.py)."""

    cdef public Py_ssize_t max_bulk
    cdef public Py_ssize_t max_array
    cdef public Py_ssize_t max_inline
    cdef public object error
    cdef bytearray _pending
    cdef Py_ssize_t _need
    cdef list _args
    cdef Py_ssize_t _left

    def __init__(self, Py_ssize_t max_bulk=MAX_BULK, Py_ssize_t max_array=MAX_ARRAY,
                 Py_ssize_t max_inline=MAX_INLINE):
        self.max_bulk = max_bulk
        self.max_array = max_array
        self.max_inline = max_inline
        self.error = None
        self._pending = bytearray()
        self._need = 0
        self._args = None
        self._left = 0

    @property
    def buffered(self):
        """Bytes held back waiting for the rest of a command."""
        return len(self._pending)

    def feed(self, data):
        """Parse *data* (appended to what was held back); returns the completed commands."""
        cdef bytes buf
        cdef list out = []
        if self.error is not None:
            return out
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return out
            buf = bytes(self._pending)
            del self._pending[:]
        elif type(data) is bytes:
            buf = <bytes>data
        else:
            buf = bytes(data)
        err = self._parse(buf, out)
        if err is not None:
            self.error = err
            del self._pending[:]
            self._args = None
        return out

    cdef object _parse(self, bytes buf, list out):
        cdef const char* p = PyBytes_AS_STRING(buf)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
        cdef Py_ssize_t pos = 0, end, start, stop, size, i
        cdef long long count = 0
        cdef int kind
        cdef list args = self._args
        cdef Py_ssize_t left = self._left
        self._args = None
        self._left = 0
        while True:
            if args is None:
                if pos >= n:
                    return None
                if p[pos] != 42:                     # not '*': an inline command
                    end = _find_lf(p, pos, n)
                    if end < 0:
                        if n - pos > self.max_inline:
                            return "Protocol error: too big inline request"
                        self._hold(buf, pos, n - pos + 1, None, 0)
                        return None
                    if end - pos > self.max_inline:
                        return "Protocol error: too big inline request"
                    words = split_inline(buf[pos:end])
                    if words is None:
                        return "Protocol error: unbalanced quotes in request"
                    pos = end + 1
                    if words:
                        out.append(words)
                    continue
                end = _find_crlf(p, pos, n)
                if end < 0:
                    if n - pos > self.max_inline:
                        return "Protocol error: too big mbulk count string"
                    self._hold(buf, pos, n - pos + 1, None, 0)
                    return None
                kind = _count(p, pos + 1, end, &count)
                if kind == _BAD or kind == _BIG or (kind == _OK and count > self.max_array):
                    return "Protocol error: invalid multibulk length"
                pos = end + 2
                if kind == _NEG:
                    continue
                args = []
                left = <Py_ssize_t>count
            while left:
                if pos >= n:
                    self._hold(buf, pos, 1, args, left)
                    return None
                if p[pos] != 36:                     # '$'
                    return "Protocol error: expected '$', got '%s'" % chr(<unsigned char>p[pos])
                end = _find_crlf(p, pos, n)
                if end < 0:
                    if n - pos > self.max_inline:
                        return "Protocol error: too big bulk count string"
                    self._hold(buf, pos, n - pos + 1, args, left)
                    return None
                if end - pos - 1 < 1 or end - pos - 1 > 18:
                    return "Protocol error: invalid bulk length"
                size = 0
                for i in range(pos + 1, end):
                    if p[i] < 48 or p[i] > 57:
                        return "Protocol error: invalid bulk length"
                    size = size * 10 + (p[i] - 48)
                if size > self.max_bulk:
                    return "Protocol error: invalid bulk length"
                start = end + 2
                stop = start + size
                if stop + 2 > n:
                    self._hold(buf, pos, stop + 2 - pos, args, left)
                    return None
                # like redis, the two bytes after the data are skipped unchecked (CRLF by contract)
                args.append(PyBytes_FromStringAndSize(p + start, size))
                pos = stop + 2
                left -= 1
            out.append(args)
            args = None

    cdef int _hold(self, bytes buf, Py_ssize_t pos, Py_ssize_t need, list args, Py_ssize_t left) except -1:
        self._pending += memoryview(buf)[pos:]
        self._need = need
        self._args = args
        self._left = left
        return 0



# -- inline commands ------------------------------------------------------------------------

_SPACE = frozenset(b" \t\r\n\v\f")
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = frozenset(b"0123456789abcdefABCDEF")


def split_inline(line):
    """Split an inline command the way redis's sdssplitargs does; None for unbalanced quotes.

    Words are separated by whitespace; ``"..."`` takes ``\\n \\r \\t \\b \\a \\\\ \\" \\xHH``
    escapes, ``'...'`` only ``\\'``; a closing quote must be followed by a space or the end.
    """
    if b'"' not in line and b"'" not in line:
        return line.split()
    out = []
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

def encode_simple(text):
    """``+text``; CR and LF become spaces (a status line cannot hold them)."""
    b = text.encode("utf-8") if isinstance(text, str) else text
    return b"+" + b.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def encode_error(text):
    """``-ERR ...`` style error line; *text* starts with its code (``ERR``, ``NOAUTH`` ...)."""
    b = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return b"-" + b.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n"


def encode_int(value):
    if -2 <= value < 256:
        return _INTS[value + 2]
    return b":%d\r\n" % value


def encode_bulk(value):
    b = value.encode("utf-8") if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(b), b)


def encode_null(proto):
    """The null bulk string of RESP2 (``$-1``), RESP3's null (``_``)."""
    return NULL3 if proto == 3 else NULL2


def encode_array(items):
    """An array of already encoded *items*."""
    return b"*%d\r\n" % len(items) + b"".join(items)


def encode_map(pairs, proto):
    """A map of already encoded keys and values: ``%N`` in RESP3, a flat array in RESP2."""
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else b"*%d\r\n" % (2 * len(pairs))
    return head + b"".join([k + v for k, v in pairs])


def encode_bool(value, proto):
    """``#t``/``#f`` in RESP3, ``:1``/``:0`` in RESP2."""
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return _INTS[3] if value else _INTS[2]


def encode_double(value, proto):
    """``,1.5`` in RESP3, a bulk string in RESP2 (as redis sends ZSCORE)."""
    if value != value:
        text = b"nan"
    elif value in (float("inf"), float("-inf")):
        text = b"inf" if value > 0 else b"-inf"
    else:
        text = repr(float(value)).encode("ascii")
        if text.endswith(b".0"):
            text = text[:len(text) - 2]
    return b"," + text + b"\r\n" if proto == 3 else encode_bulk(text)


def encode(value, proto=2):
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


include "_resp_direct.pxi"
