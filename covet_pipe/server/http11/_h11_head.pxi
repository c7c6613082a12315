# What RFC 9112 asks of a complete request head, where llhttp is lax: checked once the head is parsed,
# before the app runs (a few C comparisons on what on_header recorded). Included by _http11.pyx.


cdef void _check_head(HttpConnection conn, str version) except *:
    """Stop the parser (the status is answered, the connection closed) on a head the RFC refuses."""
    if version != "1.1" and version != "1.0":
        _refuse(conn, 505, "an HTTP version other than 1.x")   # llhttp passes 0.9 and 2.0
    if conn.hosts != 1:
        # RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with two, is a 400
        if conn.hosts or (version == "1.1" and conn.s.require_host):
            _refuse(conn, 400, "more than one Host header" if conn.hosts else "no Host header")
    elif _bad_host(conn.host):
        _refuse(conn, 400, "an invalid Host header")
    if conn.te is not None and version == "1.0":
        # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as faulty framing
        # (a 1.0 peer may not know chunked: a proxy in front could frame the body differently)
        _refuse(conn, 400, "Transfer-Encoding in an HTTP/1.0 request")
    if conn.te is not None and not _ends_chunked(conn.te):
        # RFC 9112 §6.1: the length of such a request cannot be determined (llhttp says so too,
        # but only after this callback: the app would already have started)
        _refuse(conn, 400, "a Transfer-Encoding whose final coding is not chunked")
    if PyBytes_GET_SIZE(conn.url) and PyBytes_AS_STRING(conn.url)[0] != b'/':
        _take_authority(conn)


cdef void _refuse(HttpConnection conn, int status, str why) except *:
    """Stop the parser on a head the RFC refuses: *status* is answered, the app never runs."""
    _log.warning("Invalid HTTP request received: %s", why)
    conn.limit_status = status
    raise _Stop()


cdef void _take_authority(HttpConnection conn) except *:
    """RFC 9112 §3.2.2: the authority of an absolute-form target replaces the Host field."""
    cdef bytes url = conn.url
    cdef Py_ssize_t start = url.find(b"://") + 3, end
    cdef Py_ssize_t k, n = PyBytes_GET_SIZE(url)
    if start < 4:
        return                   # '*' or CONNECT's authority-form: no authority to take
    end = start
    while end < n and url[end] not in b"/?#":
        end += 1
    authority = url[start:end]
    if not authority or b"@" in authority or _bad_host(authority):
        # an http(s) URI's host is not empty (RFC 9110 §4.2.1); userinfo is an error (§4.2.4)
        _refuse(conn, 400, "an invalid authority in the request target")
    for k in range(len(conn.headers)):
        if conn.headers[k][0] == b"host":
            conn.headers[k] = (b"host", authority)
            break
    else:
        conn.headers.append((b"host", authority))


# RFC 3986 reg-name and IPv4address characters: unreserved, '%' (of pct-encoded), sub-delims.
cdef unsigned char _HOST[256]
for _c in range(256):
    _HOST[_c] = 1 if (chr(_c).isalnum() and _c < 128) or chr(_c) in "-._~%!$&'()*+,;=" else 0


cdef bint _bad_host(bytes host) noexcept:
    """Whether a Host value is not ``uri-host [":" port]`` (RFC 9112 §3.2, RFC 3986 §3.2.2).

    Empty is valid (a target without authority). An IP-literal is checked for its brackets and
    characters only, not parsed as an address.
    """
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(host)
    cdef Py_ssize_t i = 0, n = PyBytes_GET_SIZE(host)
    while n and (p[n - 1] == b' ' or p[n - 1] == b'\t'):
        n -= 1                       # trailing whitespace is not part of a field value
    if n and p[0] == b'[':
        i = 1
        while i < n and p[i] != b']':
            if not _HOST[p[i]] and p[i] != b':':
                return True
            i += 1
        if i == n:
            return True
        i += 1
    else:
        while i < n and _HOST[p[i]]:
            i += 1
    if i < n:
        if p[i] != b':':
            return True
        for i in range(i + 1, n):
            if not b'0' <= p[i] <= b'9':
                return True
    return False


cdef bint _ends_chunked(bytes value) noexcept:
    """Whether the last coding of a Transfer-Encoding list is ``chunked`` (any case, OWS around it)."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(value)
    cdef const char *chunked = b"chunked"
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(value)
    while n and (p[n - 1] == b' ' or p[n - 1] == b'\t'):
        n -= 1
    if n < 7:
        return False
    n -= 7
    for i in range(7):
        if (p[n + i] | 0x20) != <unsigned char>chunked[i]:
            return False
    while n and (p[n - 1] == b' ' or p[n - 1] == b'\t'):
        n -= 1
    return n == 0 or p[n - 1] == b','
