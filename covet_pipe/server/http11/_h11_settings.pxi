# What one server's connections share, and the small parsing helpers. Included by _http11.pyx.


@cython.final
cdef class Settings:
    """What every connection of one server shares, read once (limits, the app, the state)."""
    cdef public object app
    cdef public object loop
    cdef public object server
    cdef public set connections
    cdef public dict state
    cdef public str root_path
    cdef public bytes root_path_b
    cdef public Py_ssize_t max_header
    cdef public Py_ssize_t max_body
    cdef public double header_timeout
    cdef public double body_timeout
    cdef public double keepalive_timeout
    cdef public bint access_log
    cdef public bint require_host
    #: the logger of access_log's lines (covet_pipe.access; uvicorn.access under uvicorn)
    cdef public object access_logger
    cdef public Py_ssize_t ws_max_size
    cdef public object ws_factory
    cdef object __weakref__

    def __init__(self, server, ws_factory=None):
        config = server.config
        self.server = server
        self.app = server.app
        self.loop = server.loop if server.loop is not None else _get_running_loop()
        self.connections = server.connections
        state = getattr(server, "state", None)
        self.state = state if state is not None else {}
        self.root_path = getattr(config, "root_path", "")
        self.root_path_b = self.root_path.encode("ascii")
        self.max_header = getattr(config, "max_header_bytes", 64 * 1024)
        self.max_body = getattr(config, "max_body_bytes", 16 * 1024 * 1024)
        self.header_timeout = getattr(config, "header_timeout", 10.0)
        self.body_timeout = getattr(config, "body_timeout", 30.0)
        self.keepalive_timeout = getattr(config, "keepalive_timeout", 5.0)
        self.access_log = getattr(config, "access_log", False)
        self.require_host = getattr(config, "require_host", True)
        self.access_logger = _access
        self.ws_max_size = getattr(config, "ws_max_size", 16 * 1024 * 1024)
        self.ws_factory = ws_factory
        _servers.add(self)              # its connections count as open ones in server_counters()


cdef dict _FAILURE_BODIES = {
    400: b"Invalid HTTP request received.",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    505: b"HTTP Version Not Supported",
}


cdef tuple _split_target(bytes url):
    """(path, query) of a request target; httptools.parse_url for anything unusual."""
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(url)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(url), q = -1
    cdef unsigned char ch
    if n and p[0] == b'/':
        for i in range(n):
            ch = p[i]
            if ch < 0x21 or ch > 0x7e or ch == b'#':
                break
            if ch == b'?' and q < 0:
                q = i
        else:
            if q < 0:
                return url, b""
            return url[:q], url[q + 1:]
    parsed = _parse_url(url)
    return parsed.path or b"/", parsed.query or b""     # http://h has the path "/" (RFC 9110 §4.2.3)
