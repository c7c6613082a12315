# Response bytes: the status lines, the cached date/server headers, header checks and copies.
# Included by _http11.pyx.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.string cimport memcpy
from libc.time cimport time_t, time


cdef list _status_lines():
    cdef list out = []
    for code in range(600):
        try:
            phrase = _HTTPStatus(code).phrase.encode()
        except ValueError:
            phrase = b""
        out.append(b"HTTP/1.1 %d %s\r\n" % (code, phrase))
    return out


#: index: the status code; the line uvicorn writes for it
cdef list _STATUS_LINES = _status_lines()

cdef time_t _date_at = 0
cdef bytes _date_headers = b""


cdef inline bytes _default_headers():
    """``date`` (refreshed once a second) and ``server``, as bytes ready to copy."""
    global _date_at, _date_headers
    cdef time_t now = time(NULL)
    if now != _date_at:
        _date_at = now
        _date_headers = (b"date: " + _formatdate(now, usegmt=True).encode("ascii")
                         + b"\r\nserver: covet-pipe\r\n")
    return _date_headers


# RFC 9110 token characters (header names), as a 256-entry table.
cdef unsigned char _TOKEN[256]
for _c in range(256):
    _TOKEN[_c] = 1 if (chr(_c).isalnum() and _c < 128) or chr(_c) in "!#$%&'*+-.^_`|~" else 0


cdef inline bint _bad_name(bytes name) noexcept:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(name)
    if n == 0:
        return True
    for i in range(n):
        if not _TOKEN[p[i]]:
            return True
    return False


cdef inline bint _bad_value(bytes value) noexcept:
    # uvicorn refuses \x00-\x08, \x0a-\x1f and \x7f (tab is allowed)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(value)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(value)
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if (c < 0x20 and c != 0x09) or c == 0x7f:
            return True
    return False


cdef inline bint _name_is(bytes name, const char *lower, Py_ssize_t n) noexcept:
    """Case-insensitive comparison of a header name with an all-lowercase C string."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    if PyBytes_GET_SIZE(name) != n:
        return False
    for i in range(n):
        if (p[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return True


cdef inline char *_put(char *out, bytes b) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(b)
    memcpy(out, PyBytes_AS_STRING(b), n)
    return out + n


cdef inline char *_put_lower(char *out, bytes b) noexcept:
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(b)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(b)
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        out[i] = <char>(c | 0x20) if 0x41 <= c <= 0x5a else <char>c
    return out + n


cdef bytes _chunk(bytes body, bint last):
    """One chunk of a chunked body (and the last-chunk marker when *last*)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef bytes size = b"%x\r\n" % n
    cdef Py_ssize_t total = PyBytes_GET_SIZE(size) + n + 2 + (5 if last else 0)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *w = PyBytes_AS_STRING(out)
    w = _put(w, size)
    memcpy(w, PyBytes_AS_STRING(body), n)
    w += n
    w[0] = b'\r'
    w[1] = b'\n'
    if last:
        memcpy(w + 2, b"0\r\n\r\n", 5)
    return out


cdef bytes _simple_response(int status, bytes body, bint close):
    """A whole response the server makes itself (400, 408, 413, 431, 500)."""
    cdef bytes head = (<bytes>_STATUS_LINES[status] + _default_headers()
                       + b"content-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
                       % len(body))
    if close:
        head += b"connection: close\r\n"
    return head + b"\r\n" + body
