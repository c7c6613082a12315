# One request and its response: the ASGI receive and send, and the task that runs the app.
# Included by _http11.pyx.


@cython.final
@cython.freelist(32)
cdef class Cycle:
    """The ASGI side of one HTTP request: ``receive``, ``send`` and what was sent so far."""
    cdef HttpConnection conn
    cdef dict scope
    cdef object task
    #: the app's receive() waiting for body or disconnect (a Future), or None
    cdef object waiter
    #: body received and not yet handed to the app
    cdef list chunks
    cdef Py_ssize_t buffered
    cdef Py_ssize_t received
    cdef bint more_body
    cdef bint final_delivered
    cdef bint continue_pending
    cdef bint head
    cdef bint http10
    cdef bint keep_alive
    cdef bint started
    cdef bint complete
    cdef bint disconnected
    cdef bint chunked
    cdef bint no_body
    #: bytes of body still owed for a Content-Length response, -1 when none was given
    cdef Py_ssize_t expected
    cdef int status
    #: when the head was parsed (CLOCK_MONOTONIC ns): the request's duration counts from here
    cdef long long t0

    # -- receive -----------------------------------------------------------------------------

    def receive(self):
        """ASGI receive: the body as it arrives, then ``http.disconnect``."""
        cdef HttpConnection conn = self.conn
        if self.continue_pending:
            self.continue_pending = False
            if not conn.closed and not self.started:
                conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.disconnected or self.complete:
            return covet_ready_new(_DISCONNECT_MSG())
        if self.buffered or (not self.more_body and not self.final_delivered):
            return covet_ready_new(self._take())
        if self.waiter is None:
            self.waiter = conn.loop.create_future()
        if conn.read_paused and conn.active is self:
            conn.resume_reading()
        return self.waiter

    cdef dict _take(self):
        cdef bytes body
        if self.buffered == 0:
            body = b""
        elif len(self.chunks) == 1:
            body = <bytes>self.chunks[0]
        else:
            body = b"".join(self.chunks)
        self.chunks = []
        self.buffered = 0
        if not self.more_body:
            self.final_delivered = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    cdef void feed(self, bytes body) except *:
        self.chunks.append(body)
        self.buffered += len(body)
        self.wake()

    cdef void wake(self) except *:
        """Hand the app what arrived (body, its end, or a disconnect) if it is waiting."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.waiter = None
        if self.disconnected or self.complete:
            waiter.set_result(_DISCONNECT_MSG())
        elif self.buffered or not self.more_body:
            waiter.set_result(self._take())
        else:
            self.waiter = waiter

    cdef void gone(self) except *:
        """The client went away (or the server gave up on it)."""
        self.disconnected = True
        self.wake()

    # -- send --------------------------------------------------------------------------------

    def send(self, message):
        """ASGI send: ``http.response.start`` then ``http.response.body`` messages."""
        cdef HttpConnection conn = self.conn
        if self.disconnected:
            return _READY_NONE
        t = message["type"]
        if not self.started:
            if t != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got {t!r}.")
            self._start(message)
        elif not self.complete:
            if t != "http.response.body":
                raise RuntimeError(f"Expected ASGI message 'http.response.body', but got {t!r}.")
            self._body(message)
        else:
            raise RuntimeError(f"Unexpected ASGI message {t!r} sent, after response already completed.")
        if conn.write_paused and not conn.closed:
            return conn.drain()
        return _READY_NONE

    cdef void _start(self, message) except *:
        cdef HttpConnection conn = self.conn
        cdef object status_obj = message["status"]
        cdef int status
        cdef Py_ssize_t total, i, n
        cdef bytes name, value, line, dflt, out
        cdef bint has_close = False, has_length = False, add_te = False
        cdef char *w
        if type(status_obj) is not int or not 100 <= status_obj <= 599:
            raise RuntimeError(f"Invalid HTTP status code {status_obj!r} in response.")
        status = status_obj
        headers = message.get("headers", ())
        if type(headers) is not list and type(headers) is not tuple:
            headers = list(headers)
        self.started = True
        self.continue_pending = False
        self.status = status
        _count_status(status)
        line = <bytes>_STATUS_LINES[status]
        dflt = _default_headers()
        total = PyBytes_GET_SIZE(line) + PyBytes_GET_SIZE(dflt) + 2
        n = len(headers)
        for i in range(n):
            name, value = headers[i]
            if _bad_name(name):
                raise RuntimeError("Invalid HTTP header name.")
            if _bad_value(value):
                raise RuntimeError("Invalid HTTP header value.")
            total += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
            if _name_is(name, "content-length", 14):
                if not has_length and not self.chunked:
                    self.expected = int(value)
                    has_length = True
            elif _name_is(name, "transfer-encoding", 17):
                if value.lower() == b"chunked":
                    self.chunked = True
                    self.expected = -1
                    has_length = False
            elif _name_is(name, "connection", 10):
                if b"close" in [tok.strip() for tok in value.lower().split(b",")]:
                    self.keep_alive = False
                    has_close = True
        self.no_body = self.head or status == 204 or status == 304 or status < 200
        if not has_length and not self.chunked and not self.no_body:
            if self.http10:
                self.keep_alive = False      # the body ends when the connection does
            else:
                self.chunked = add_te = True
                total += 28                  # transfer-encoding: chunked\r\n
        if not self.keep_alive and not has_close:
            total += 19                      # connection: close\r\n
        out = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(out)
        w = _put(w, line)
        w = _put(w, dflt)
        for i in range(n):
            name, value = headers[i]
            w = _put_lower(w, name)
            w[0] = b':'
            w[1] = b' '
            w = _put(w + 2, value)
            w[0] = b'\r'
            w[1] = b'\n'
            w += 2
        if add_te:
            memcpy(w, b"transfer-encoding: chunked\r\n", 28)
            w += 28
        if not self.keep_alive and not has_close:
            memcpy(w, b"connection: close\r\n", 19)
            w += 19
        w[0] = b'\r'
        w[1] = b'\n'
        if conn.s.access_log:
            conn.log_access(self.scope, status)
        if not conn.closed:
            conn.hold(out)

    cdef void _body(self, message) except *:
        cdef HttpConnection conn = self.conn
        cdef bytes body = message.get("body", b"")
        cdef bint more = message.get("more_body", False)
        cdef Py_ssize_t n = len(body)
        if self.no_body:
            pass
        elif self.chunked:
            if n:
                conn.write(_chunk(body, not more))
            elif not more:
                conn.write(b"0\r\n\r\n")
        else:
            if self.expected >= 0:
                if n > self.expected:
                    raise RuntimeError("Response content longer than Content-Length")
                self.expected -= n
            if n:
                conn.write(body)
        if not more:
            conn.flush()
            if self.expected > 0 and not self.no_body:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            _count_duration(self.t0)
            self.wake()
            conn.response_done(self)

    # -- the app's end -----------------------------------------------------------------------

    cdef void app_returned(self, result) except *:
        if result is not None:
            _log.error("ASGI callable should return None, but returned %r.", result)
            self.conn.abort_response(self)
        elif not self.started and not self.disconnected:
            _log.error("ASGI callable returned without starting response.")
            self.send_500()
        elif not self.complete and not self.disconnected:
            _log.error("ASGI callable returned without completing response.")
            self.conn.abort_response(self)

    cdef void app_failed(self, exc) except *:
        if isinstance(exc, _CancelledError):
            if not self.complete:
                self.conn.abort_response(self)
            return
        _log.error("Exception in ASGI application", exc_info=exc)
        if not self.started and not self.disconnected:
            self.send_500()
        elif not self.complete:
            self.conn.abort_response(self)
        else:
            # The response went out whole, but an app that raised is not trusted with the next
            # request on this connection: closed (after what is written), as uvicorn does.
            self.conn._close()

    cdef void send_500(self) except *:
        self.keep_alive = False
        self.send({"type": "http.response.start", "status": 500,
                   "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                               (b"content-length", b"21"), (b"connection", b"close")]})
        self.send({"type": "http.response.body", "body": b"Internal Server Error", "more_body": False})


cdef inline dict _DISCONNECT_MSG():
    return {"type": "http.disconnect"}


async def _run_asgi(Cycle cycle, app):
    """The task of one request: the app, then what its end means for the connection."""
    try:
        result = await app(cycle.scope, cycle.receive, cycle.send)
    except BaseException as exc:
        cycle.app_failed(exc)
    else:
        cycle.app_returned(result)
    finally:
        cycle.conn.task_done()
