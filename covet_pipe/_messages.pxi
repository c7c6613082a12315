# Request, Response and the actions a request hook returns.
# Included by _core.pyx.

import json as _json
from http import HTTPStatus as _HTTPStatus
from urllib.parse import parse_qsl as _parse_qsl


@cython.freelist(64)
cdef class Request:
    """The request a plugin sees: a lazy view over the ASGI scope.

    Nothing is decoded until a plugin asks. Edits (``method``, ``path``,
    ``query_string``, ``headers``) are copy-on-write: the app sees them, the
    server's scope is left alone.
    """

    def __init__(self, scope=None, *, method="GET", path="/", headers=None,
                 query_string=b"", body=None, client=None, scheme="http",
                 type="http"):
        if scope is None:
            h = Headers(headers)
            scope = {
                "type": type, "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": method, "scheme": scheme, "path": path,
                "raw_path": path.encode("utf-8"), "query_string": _enc(query_string),
                "root_path": "", "headers": h._raw, "client": client, "server": None,
            }
        elif not isinstance(scope, dict):
            raise TypeError(f"Request(scope): expected an ASGI scope dict, got {scope!r}")
        self.scope = scope
        self._body = body

    cdef void _own(self):
        self._version += 1
        if not self._dirty:
            self.scope = dict(self.scope)
            self._dirty = True

    cdef int _edit(self) except -1:
        # A setter's _own: refused once the app has the scope.
        if self._frozen is not None:
            raise _started_error(self._frozen, self._frozen_ran, _EDIT_REQUEST)
        self._own()
        return 0

    cpdef dict build_scope(self):
        """The scope the app sees: the original unless a plugin edited it."""
        if self._headers is not None and self._headers._dirty:
            self._own()
            self.scope["headers"] = self._headers._raw
        return self.scope

    @property
    def type(self):
        return self.scope.get("type", "http")

    @property
    def method(self):
        return self.scope.get("method", "GET")

    @method.setter
    def method(self, value):
        self._edit()
        self.scope["method"] = str(value).upper()

    @property
    def path(self):
        return self.scope.get("path", "/")

    @path.setter
    def path(self, value):
        if not isinstance(value, str) or not value.startswith("/"):
            raise ValueError(f"Request.path must be a str that starts with '/', got {value!r}")
        self._edit()
        self.scope["path"] = value
        # raw_path follows path: the app must not see two different paths.
        from urllib.parse import quote
        self.scope["raw_path"] = quote(value).encode("ascii")

    @property
    def raw_path(self):
        rp = self.scope.get("raw_path")
        return rp if rp is not None else self.path.encode("utf-8")

    @property
    def query_string(self):
        return self.scope.get("query_string", b"")

    @query_string.setter
    def query_string(self, value):
        self._edit()
        self.scope["query_string"] = _enc(value)

    @property
    def query_params(self):
        """The query string parsed into a dict (the last value wins)."""
        return dict(_parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True))

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers.wrap(self.scope.get("headers"))
            if self._frozen is not None:
                self._headers._freeze(self._frozen, self._frozen_ran, True)
        return self._headers

    @property
    def client(self):
        return self.scope.get("client")

    @property
    def scheme(self):
        return self.scope.get("scheme", "http")

    @property
    def http_version(self):
        return self.scope.get("http_version", "1.1")

    @property
    def state(self):
        """Per-request data shared with other plugins and the app (ASGI ``scope["state"]``)."""
        st = self.scope.get("state")
        if st is None:
            st = self.scope["state"] = {}
        return st

    @property
    def body(self):
        """The request body, when the plugin declared ``needs_body``; else None."""
        return self._body

    @property
    def url(self):
        host = self.headers.get("host")
        if host is None:
            server = self.scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else "localhost"
        qs = self.query_string
        return f"{self.scheme}://{host}{self.path}" + (f"?{qs.decode('latin-1')}" if qs else "")

    def __repr__(self):
        return f"<Request {self.method} {self.path}>"


cdef inline bint _bodiless(int status) noexcept:
    # A response with this status has no content (RFC 9110 §15.2, §15.3.5, §15.4.5).
    return status < 200 or status == 204 or status == 304


@cython.freelist(64)
cdef class Response:
    """A response: status, headers (a multi-map) and, for responses a plugin makes, a body.

    In a response hook the body of the app's response is streaming past and is
    not here (``body`` is None); edit ``status`` and ``headers``.

    ``body`` may also be an async iterator (or a sync iterable) of bytes: the pipeline
    sends it chunk by chunk, without a Content-Length; ``body`` is then None.
    """

    def __init__(self, status=200, headers=None, body=b"", media_type=None):
        self._status = _check_status(status)
        self._orig_status = self._status
        self._headers = Headers(headers) if headers is not None else None
        if isinstance(body, str):
            body = (<str>body).encode("utf-8")
            if media_type is None:
                media_type = "text/plain; charset=utf-8"
        elif body is None:
            body = b""
        elif not isinstance(body, (bytes, bytearray, memoryview)):
            if hasattr(body, "__aiter__") or (hasattr(body, "__iter__") and not hasattr(body, "keys")):
                self._stream = body
                self.body = None
                self.media_type = media_type
                return
            raise TypeError(f"Response body must be bytes, str or an (async) iterable of bytes, got "
                            f"{type(body).__name__}; use Response.json(data) for JSON")
        self.body = bytes(body)
        self.media_type = media_type

    @classmethod
    def json(cls, data, status=200, headers=None):
        """A JSON response."""
        return cls(status, headers, _json.dumps(data, separators=(",", ":")).encode("utf-8"),
                   "application/json")

    @property
    def status(self):
        return self._status

    @status.setter
    def status(self, value):
        if self._frozen is not None:
            raise _started_error(self._frozen, self._frozen_ran, _EDIT_STATUS)
        self._status = _check_status(value)

    @property
    def headers(self):
        if self._headers is None:
            self._headers = Headers.wrap(self._raw_src)
            if self._frozen is not None:
                self._headers._freeze(self._frozen, self._frozen_ran, False)
        return self._headers

    @headers.setter
    def headers(self, value):
        if self._frozen is not None:
            raise _started_error(self._frozen, self._frozen_ran, _EDIT_HEADERS)
        self._headers = Headers(value)
        self._headers._dirty = True

    cdef bint _changed(self):
        return self._status != self._orig_status or (
            self._headers is not None and self._headers._dirty)

    cdef int _freeze(self, object who, Py_ssize_t ran) except -1:
        # Its start went to the server: status and headers can no longer change.
        if who is None:
            who = False         # frozen, by nobody known
        self._frozen = who
        self._frozen_ran = ran
        self._ctx = None
        if self._headers is not None:
            self._headers._freeze(who, ran, False)
        return 0

    def transform_body(self, transform):
        """Transform the body as it streams, without holding it: ``transform(chunk, last) -> bytes``.

        Called for each chunk of the body in order (the app's ``http.response.body`` messages,
        or the chunks of a Response a plugin made), ``last`` True for the final one (whose chunk
        may be empty): return the bytes to send in its place (``b""`` to hold back, then flush on
        the last call). It may be ``async def``. Transforms compose in the order they were added,
        that is in response-hook order (the innermost plugin's first). Content-Length is dropped
        (the server chunks the body), unless the whole body came in one message: then it is the
        length of what the transforms made (or the app's own, if they all handed the chunk back
        as it was). The response start waits for the first chunk to
        pass, so a transform's first call may still edit ``headers`` (e.g. to decide not to
        compress after all). A HEAD response and a status with no content call no transform.
        """
        if self._frozen is not None or type(self._transforms) is tuple:
            raise _started_error(self._frozen, self._frozen_ran, _EDIT_TRANSFORM)
        if not callable(transform):
            raise TypeError(f"Response.transform_body() takes a callable(chunk, last) -> bytes, "
                            f"got {type(transform).__name__}")
        if self._transforms is None:
            self._transforms = []
        self._transforms.append((transform, self._ctx._cur if self._ctx is not None else None))

    cdef list asgi_headers(self):
        """Headers to send for a response the pipeline sends itself (its body as it is)."""
        if self._stream is not None or self._transforms is not None:
            return self._start_headers(-1)
        return self._start_headers(len(self.body) if self.body is not None else 0)

    cdef list _start_headers(self, Py_ssize_t length):
        # The length is the pipeline's to say: none for a status with no content, and none
        # when it is not known (-1: a streamed or transformed body, which the server frames).
        cdef Headers h = self.headers
        cdef list raw = list(h._raw)
        if self.media_type is not None and b"content-type" not in [k.lower() for k, v in raw]:
            raw.append((b"content-type", _enc(self.media_type)))
        raw = _without_framing(raw)
        if not _bodiless(self._status) and length >= 0:
            raw.append((b"content-length", str(length).encode("ascii")))
        return raw

    def __repr__(self):
        return f"<Response {self._status}>"


cdef int _check_status(object status) except -1:
    if type(status) is not int and not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"HTTP status must be an int, got {type(status).__name__} ({status!r})")
    if not 100 <= status <= 999:
        raise ValueError(f"HTTP status must be between 100 and 999, got {status}")
    return status


cdef class _Action:
    """What a request hook asks for: go on, or answer now (see MiddlewareAction)."""

    def __repr__(self):
        if self.kind == ACT_CONTINUE:
            return "MiddlewareAction.CONTINUE"
        return f"MiddlewareAction.respond({self.response!r})"


cdef _Action _CONTINUE = _Action.__new__(_Action)
_CONTINUE.kind = ACT_CONTINUE


cdef _Action _make_respond(Response response):
    cdef _Action a = _Action.__new__(_Action)
    a.kind = ACT_RESPOND
    a.response = response
    return a


def _reason_phrase(int status):
    try:
        return _HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class MiddlewareAction:
    """The actions a request hook returns.

    ``None`` or ``CONTINUE``: go on. ``respond(response)``: stop the request
    phase, skip the app, run the response phase. ``reject(status, reason)``: a
    ``respond`` with a JSON error body.
    """

    CONTINUE = _CONTINUE

    @staticmethod
    def respond(response):
        if not isinstance(response, Response):
            raise TypeError(f"MiddlewareAction.respond() takes a Response, got {type(response).__name__}")
        return _make_respond(<Response>response)

    @staticmethod
    def reject(status=403, reason=None, headers=None):
        _check_status(status)
        if status < 400:
            raise ValueError(f"MiddlewareAction.reject() is for error statuses (>= 400), got {status}; "
                             "use respond() for other answers")
        reason = reason or _reason_phrase(status)
        return _make_respond(Response.json({"error": reason}, status, headers))


cpdef Response _error_response(int status):
    """The body a client sees when a plugin fails: no names, no traceback."""
    return Response.json({"error": _reason_phrase(status)}, status)
