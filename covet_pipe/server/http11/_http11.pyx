# cython: language_level=3, boundscheck=False, wraparound=False
"""HTTP/1.1 for covet-pipe's listener: one compiled asyncio.Protocol per connection, on httptools.

``HttpConnection`` takes the connection from the protocol chain, feeds httptools, builds the
ASGI scope uvicorn would build, runs each request in its own Task (so ``current_task()`` and
contextvars behave as under uvicorn) and writes the response. Included files: ``_h11_bytes.pxi``
(response bytes), ``_h11_settings.pxi`` (what a server's connections share), ``_h11_counters.pxi``
(what the server counts for metrics), ``_h11_wire.pxi``
(``_Wire``: writes, closing, the timer), ``_h11_cycle.pxi`` (one request's receive/send),
``_h11_head.pxi`` (what RFC 9112 asks of a complete request head).
"""

cimport cython

from asyncio import CancelledError as _CancelledError, get_running_loop as _get_running_loop
from contextvars import copy_context as _copy_context
from email.utils import formatdate as _formatdate
from http import HTTPStatus as _HTTPStatus
from urllib.parse import unquote as _unquote
import logging

import httptools

from covet_pipe.logsafe import logger as _safe_logger, printable as _printable

cdef extern from "_ready.h":
    int covet_ready_init_type() except -1
    object covet_ready_new(object value)

covet_ready_init_type()

cdef object _log = _safe_logger("covet_pipe.server")   # tracebacks with escaped messages
cdef object _access = logging.getLogger("covet_pipe.access")
cdef object _READY_NONE = covet_ready_new(None)
cdef object _HttpRequestParser = httptools.HttpRequestParser
cdef object _HttpParserError = httptools.HttpParserError
cdef object _HttpParserUpgrade = httptools.HttpParserUpgrade
cdef object _parse_url = httptools.parse_url
cdef dict _METHODS = {m.encode(): m for m in
                      ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")}

cdef enum:
    #: request body buffered for an app that is not reading it: pause reading above this
    HIGH_WATER = 65536
    #: a body up to this size goes out in the same write as its response head
    COALESCE_MAX = 16384
    #: what the per-connection timer is watching
    T_NONE = 0
    T_KEEPALIVE = 1
    T_HEAD = 2
    T_BODY = 3


include "_h11_bytes.pxi"
include "_h11_counters.pxi"
include "_h11_settings.pxi"
include "_h11_wire.pxi"
include "_h11_cycle.pxi"
include "_h11_head.pxi"


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing (a limit was hit)."""


@cython.final
cdef class HttpConnection(_Wire):
    """asyncio.Protocol for one HTTP/1.1 connection: keep-alive, pipelining, limits, timeouts."""
    cdef Settings s
    cdef object info
    cdef object parser
    cdef object client
    cdef object server_addr
    cdef str scheme
    # the message being parsed
    cdef bytes url
    cdef list headers
    cdef Py_ssize_t head_bytes
    cdef Py_ssize_t head_raw
    #: a message began during the read being parsed (its head holds only the bytes after it)
    cdef bint head_began
    cdef Py_ssize_t declared
    cdef bint in_head
    cdef bint in_body
    cdef bint expect_continue
    cdef bint ws_upgrade
    #: the Host fields of the message being parsed: how many, and the last one's value
    cdef int hosts
    cdef bytes host
    #: the last Transfer-Encoding field of the message being parsed (its final coding decides), or None
    cdef bytes te
    cdef Cycle cycle
    # the request whose response is being written, and pipelined ones waiting for it
    cdef Cycle active
    cdef list queue
    cdef int tasks
    cdef bint shutting_down
    #: the context connection callbacks run in; each request's task runs in a copy of it
    cdef object base_ctx
    #: a status (400, 408, 413, 414, 431, 505) to answer once the responses ahead of it are written
    cdef object pending_failure
    #: the status a parser callback stopped the parser for (a limit, or a head the RFC refuses)
    cdef int limit_status

    def __init__(self, info, Settings settings):
        self.s = settings
        self.info = info
        self.loop = settings.loop
        self.client = info.client
        self.server_addr = info.server
        self.scheme = info.scheme
        self.queue = []
        self.headers = []
        self.url = b""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.base_ctx = _copy_context()
        self.flush_cb = self._flush
        self.parser = _HttpRequestParser(self)
        try:
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        except AttributeError:  # httptools < 0.6.3
            pass
        self.s.connections.add(self)
        # the first head's deadline counts from accept: protocol detection took part of it
        accepted = getattr(self.info, "accepted_at", None)
        if accepted is None:
            self._arm(T_HEAD, self.s.header_timeout)
        else:
            self._arm(T_HEAD, accepted + self.s.header_timeout - self.loop.time())

    def data_received(self, data):
        cdef bint was_in_head = self.in_head
        if self.closed or self.pending_failure is not None:
            return
        self.head_began = False
        try:
            self.parser.feed_data(data)
        except _HttpParserUpgrade as exc:
            self._upgraded(data, exc.args[0])
            return
        except _HttpParserError as exc:
            if self.limit_status:
                self.fail(self.limit_status)
            else:
                _log.warning("Invalid HTTP request received: %s", exc)
                self.fail(400)
            return
        if self.in_head:
            # httptools buffers a header until it ends: bound what it holds as well. A head that
            # goes on from the last read holds all of this one; a head that began in this read
            # holds what the callbacks counted, plus at most the one header httptools still holds
            # (this read's bytes before the head belong to the requests ahead of it).
            if was_in_head and not self.head_began:
                self.head_raw += len(data)
            else:
                self.head_raw = self.head_bytes
            if self.head_raw > self.s.max_header:
                self.fail(431)

    def eof_received(self):
        pass

    def connection_lost(self, exc):
        cdef Cycle c
        self.closed = True
        self._arm(T_NONE, 0)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for c in (self.active, self.cycle):
            if c is not None:
                c.gone()
        for c in self.queue:
            c.gone()
        self.queue = []
        self.write_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)
        if self.tasks == 0:
            self.s.connections.discard(self)
        self.parser = None

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self):
        self.in_head = True
        self.head_began = True
        self.head_bytes = 0
        self.head_raw = 0
        self.declared = 0
        self.expect_continue = False
        self.hosts = 0
        self.host = None
        self.te = None
        self.url = b""
        self.headers = []
        if self.active is None and self.timer_kind != T_HEAD:   # the first head's runs since accept
            self._arm(T_HEAD, self.s.header_timeout)

    def on_url(self, bytes url):
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.s.max_header:
            self.limit_status = 414      # the target alone is over the limit (RFC 9112 §3)
            raise _Stop()

    def on_header(self, bytes name, bytes value):
        cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
        name = name.lower()
        self.head_bytes += len(name) + n + 4
        if n and (PyBytes_AS_STRING(value)[n - 1] == b' ' or PyBytes_AS_STRING(value)[n - 1] == b'\t'):
            value = value.rstrip(b" \t")     # llhttp keeps trailing OWS, not part of the value (RFC 9110 §5.5)
        if self.head_bytes > self.s.max_header:
            self.limit_status = 431
            raise _Stop()
        if name == b"content-length":
            self.declared = int(value)       # llhttp has checked it is digits
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        elif name == b"host":
            self.hosts += 1
            self.host = value
        elif name == b"transfer-encoding":
            self.te = value
        self.headers.append((name, value))

    def on_headers_complete(self):
        cdef Cycle c
        cdef bytes raw_path, query
        self.in_head = False
        parser = self.parser
        method = _METHODS.get(parser.get_method())
        if method is None:
            method = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        _check_head(self, version)
        if parser.should_upgrade() and self.s.ws_factory is not None and self._wants_websocket():
            self.ws_upgrade = True
            return
        if self.declared > self.s.max_body:
            self.limit_status = 413
            raise _Stop()
        raw_path, query = _split_target(self.url)
        path = raw_path.decode("ascii")
        if "%" in path:
            path = _unquote(path)
        c = Cycle.__new__(Cycle)
        c.t0 = _now_ns()
        c.conn = self
        c.chunks = []
        c.more_body = True
        c.expected = -1
        c.head = method == "HEAD"
        c.http10 = version != "1.1"
        c.keep_alive = not c.http10 and parser.should_keep_alive() and not self.shutting_down
        c.continue_pending = self.expect_continue and not c.http10   # RFC 9110 §10.1.1: 1.0 has no 100
        c.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server_addr,
            "client": self.client,
            "scheme": self.scheme,
            "method": method,
            "root_path": self.s.root_path,
            "path": self.s.root_path + path if self.s.root_path else path,
            "raw_path": self.s.root_path_b + raw_path if self.s.root_path else raw_path,
            "query_string": query,
            "headers": self.headers,
            "state": self.s.state.copy(),
        }
        self.cycle = c
        self.in_body = True
        if self.active is None:
            self._arm(T_BODY, self.s.body_timeout)
            self._run(c)
        else:
            self.queue.append(c)
            self.pause_reading()

    def on_body(self, bytes body):
        cdef Cycle c = self.cycle
        if c is None:
            return
        c.received += len(body)
        if c.received > self.s.max_body:
            self.limit_status = 413    # also once the app has answered: the limit is the server's
            raise _Stop()
        if not (c.complete or c.disconnected):     # else nobody reads it any more: dropped
            c.feed(body)
            if c.buffered > HIGH_WATER:
                self.pause_reading()
                return
        if self.timer_kind == T_BODY:             # still arriving, read or dropped
            self.deadline = self.loop.time() + self.s.body_timeout

    def on_message_complete(self):
        cdef Cycle c = self.cycle
        self.in_body = False
        if self.ws_upgrade or c is None:
            return
        c.more_body = False
        c.wake()
        if self.timer_kind == T_BODY:
            if self.active is None:      # answered before the body ended: now idle
                self._arm(T_KEEPALIVE, self.s.keepalive_timeout)
            else:
                self._arm(T_NONE, 0)

    # -- requests ----------------------------------------------------------------------------

    cdef bint _wants_websocket(self):
        cdef bint upgrade = False, websocket = False
        for name, value in self.headers:
            if name == b"connection":
                upgrade = upgrade or b"upgrade" in [t.strip() for t in value.lower().split(b",")]
            elif name == b"upgrade":
                websocket = value.lower() == b"websocket"
        return upgrade and websocket

    cdef void _run(self, Cycle c, bint from_task=False) except *:
        self.active = c
        self.tasks += 1
        if from_task:
            # started from the previous request's task: not in its context, a copy of the server's
            c.task = self.loop.create_task(_run_asgi(c, self.s.app), context=self.base_ctx.copy())
        else:
            c.task = self.loop.create_task(_run_asgi(c, self.s.app))

    cdef void task_done(self) except *:
        self.tasks -= 1
        if self.closed and self.tasks == 0:
            self.s.connections.discard(self)

    cdef void response_done(self, Cycle c) except *:
        """*c*'s response is written: close, start the next pipelined request, or wait idle."""
        cdef Cycle nxt
        if self.closed:
            return
        if not c.keep_alive or self.shutting_down:
            self._close()
            return
        self.active = None
        if self.queue:
            nxt = <Cycle>self.queue.pop(0)
            self._run(nxt, True)
            if not self.queue:
                self.resume_reading()
            return
        if self.pending_failure is not None:
            self._answer_failure()
            return
        self.resume_reading()
        if self.in_head:
            self._arm(T_HEAD, self.s.header_timeout)
        elif self.cycle is not c or not c.more_body:
            self._arm(T_KEEPALIVE, self.s.keepalive_timeout)
        else:
            self._arm(T_BODY, self.s.body_timeout)   # the app answered before reading the body

    cdef void abort_response(self, Cycle c) except *:
        """The app broke off a response: the connection cannot carry another one."""
        c.complete = True
        c.wake()
        self._close()

    cdef void log_access(self, dict scope, int status) except *:
        # The raw target, still percent-encoded as the client sent it (as uvicorn logs it): the decoded
        # path can hold CR/LF. printable() escapes whatever control bytes are left; a quote is %22, as
        # uvicorn writes it, so the quoted request field cannot end early.
        client = scope["client"]
        qs = scope["query_string"]
        raw = scope.get("raw_path")
        target = (raw if type(raw) is bytes else str(scope["path"]).encode("utf-8", "replace")) + (
            b"?" + qs if qs else b"")
        self.s.access_logger.info('%s - "%s %s HTTP/%s" %d', "%s:%d" % tuple(client) if client else "-",
                                  _printable(scope["method"]), _printable(target.replace(b'"', b"%22"), 2048),
                                  scope["http_version"], status)

    # -- failures, limits, timeouts ------------------------------------------------------------

    cdef void fail(self, int status) except *:
        """Answer *status* and close; after the response under way, if there is one.

        A failure inside a request's body belongs to that request (its app sees a
        disconnect); a failure in a head belongs to a request that never started.
        """
        cdef Cycle c = self.cycle if self.in_body else None
        cdef Cycle a = self.active
        self.pause_reading()
        self._arm(T_NONE, 0)
        if c is not None:
            c.gone()                 # the app's sends are dropped from now on
            if c in self.queue:
                self.queue.remove(c)
            if c.started:
                self._close()        # its response is (being) written: only closing is left
                return
            if c is a:
                a = None
        self.pending_failure = status
        if a is None or a.complete or a.disconnected:
            self._answer_failure()

    cdef void _answer_failure(self) except *:
        cdef int status = self.pending_failure
        body = _FAILURE_BODIES[status]
        _count_status(status)           # the server's own answers count among the responses too
        self.write(_simple_response(status, body, True))
        self._close()

    cdef void pause_reading(self) except *:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()
            if self.timer_kind == T_BODY:
                self._arm(T_NONE, 0)    # we stopped reading: the client is not the one stalling

    cdef void resume_reading(self) except *:
        if self.read_paused and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
            if self.active is not None and self.active.more_body and self.timer_kind == T_NONE:
                self._arm(T_BODY, self.s.body_timeout)

    cdef void timed_out(self, int kind) except *:
        if kind == T_KEEPALIVE:
            self._close()
        else:
            self.fail(408)      # a head or a body that stopped arriving

    # -- shutdown and upgrade -------------------------------------------------------------------

    def shutdown(self):
        """Graceful shutdown: close now if idle, else after the response under way."""
        self.shutting_down = True
        if self.active is None or self.active.complete:
            self._close()
        else:
            self.active.keep_alive = False
            self.queue = []

    def abort(self):
        """Forced shutdown: cut the connection, cancel its request."""
        if self.active is not None and self.active.task is not None:
            self.active.task.cancel()
        if self.transport is not None:
            self.closed = True
            self.transport.abort()

    def is_idle(self):
        return self.active is None

    cdef void _upgraded(self, data, Py_ssize_t offset) except *:
        if not self.ws_upgrade:
            # An upgrade we do not speak (h2c, CONNECT): serve the request, then close.
            if self.active is not None:
                self.active.keep_alive = False
            elif self.cycle is not None and self.cycle.complete:
                self._close()
            self.pause_reading()
            return
        head = [self.parser.get_method(), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n")
        self._arm(T_NONE, 0)
        self.s.connections.discard(self)
        ws = self.s.ws_factory(self.info, self.s)
        self.transport.set_protocol(ws)
        ws.connection_made(self.transport)
        ws.data_received(b"".join(head))
        if offset < len(data) and not self.transport.is_closing():
            ws.data_received(bytes(data[offset:]))   # the request's answer comes first (see _ws.py)


def connection_factory(info, Settings settings):
    """A new HttpConnection for the connection described by *info* (a ConnectionInfo)."""
    return HttpConnection(info, settings)
