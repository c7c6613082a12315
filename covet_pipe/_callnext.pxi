# The call_next style (included in _core.pyx): one plugin around the rest of the chain, in C.
#
# A call_next layer is one object, _Layer, awaited by the request's coroutine: a state machine
# stepped through am_send (_callnext.h), which runs the plugin's coroutine, then sends what it
# returned. ``call_next`` (_Pull, _callnext_response.pxi) drives the downstream app inside the
# plugin's own task (_callnext_drive.pxi): the app's ``send`` hands each message to the driver
# (_callnext_app.pxi), so the response start comes back out of call_next, and everything the app
# waits on goes to the event loop unchanged. Once the plugin returns the app's own response, the start goes to the server and the
# app's sends go straight to the server's send; the layer then only passes the app's awaits
# through. The app always ends inside the loop before the layer returns: a response the plugin
# replaced is dropped (sends are no-ops, receive says the client left) while the app runs to its end.

cdef extern from "_callnext.h":
    ctypedef int (*covet_step_fn)(PyObject *self, PyObject *arg, PyObject **out) except -1
    int covet_cn_install(object type, covet_step_fn step) except -1

from cpython.ref cimport Py_INCREF, Py_DECREF
from libc.string cimport memcmp
from collections import deque as _deque
import asyncio as _asyncio

#: seconds an app whose response a call_next plugin discarded may run on (its sends no-ops,
#: its receive saying the client left) before it is cancelled
DISCARD_GRACE = 5.0
import types as _types

from covet_pipe.errors import ClientDisconnected

cdef enum:
    # how the app's send behaves (_Layer.mode)
    CN_CAPTURE = 0      # its messages go to the driver (call_next, body_iterator)
    CN_DIRECT = 1       # straight to the server's send: the plugin returned the app's response
    CN_NOBODY = 2       # as CN_DIRECT, for a status without a body: body and trailers are dropped
    CN_DROP = 3         # no-ops: the plugin replaced the response (receive says the client left)

    # where the layer is (_Layer.state)
    CN_INIT = 0         # nothing ran yet
    CN_PLUGIN = 1       # the plugin's process_request runs
    CN_START = 2        # the app's response start, then what it sent meanwhile, go to the server
    CN_APP = 3          # the app runs on, its sends going straight to the server
    CN_OWN = 4          # the layer sends a response itself (the plugin's, a 500 ...)
    CN_FINISH = 5       # the app runs to its end, its response dropped
    CN_DONE = 6

    # what _Layer._pull found
    PULL_MESSAGE = 0    # the app handed over a message (_Layer.message)
    PULL_YIELD = 1      # the app (or the driver for it) waits on what *out holds: the loop's
    PULL_DONE = 2       # the app returned


@cython.final
cdef class _Layer:
    """One call_next plugin around its downstream, for one request: awaited once."""
    cdef Entry entry
    cdef object downstream         # the rest of the chain and the app (an ASGI app)
    cdef object srv_receive        # the server's receive and send
    cdef object srv_send
    cdef Request outer             # the chain's request (what a fail-open skip sends on)
    cdef CallNextRequest req       # the plugin's view of it
    cdef RequestContext ctx        # made when the layer sends a response itself
    cdef _Pull cn                  # call_next (its callable and its awaitable)
    cdef object plugin             # the plugin's coroutine
    cdef object app                # the app's coroutine (its iterator), once call_next started it
    cdef object sub                # what CN_START / CN_OWN await: a send of the server's, a response
    cdef object sub_fut            # the post whose message sub sends (resolved when it is sent)
    cdef int state
    cdef int mode
    cdef int next_mode             # the mode once the start is out
    cdef bint driving              # inside a step of the app: its send hands messages over
    cdef bint app_done
    cdef bint unacked              # the driver holds a message it has not answered yet
    cdef bint saw_disconnect       # the app's receive said the client left
    cdef bint body_done            # the app sent its last body message (read by body_iterator)
    cdef bint ws                   # a websocket: the response is the handshake's answer
    cdef object app_error          # what the app raised (it passes through call_next)
    cdef object message            # the message the app handed over
    cdef object message_fut        # ... and the post it came from (None: the app's own send)
    cdef object puller             # the _Pull driving the app right now (it yielded to the loop)
    cdef StreamedResponse resp
    cdef object pending            # posts: (message, future) from sends of other tasks
    cdef object parked             # a future the app still waits on after a post woke the driver
    cdef object wait               # the driver's wait for the app's future or a post (_wait_for)
    cdef object waker
    cdef object to_throw           # an exception for the app at its next step
    cdef object raise_after        # an exception to raise once the app ended
    cdef object app_receive        # the app's receive (_AppReceive), made once
    cdef list replay               # request messages the plugin read, for the app's receive
    cdef list read_chunks          # the body chunks the plugin read (request.body(), .stream())
    cdef bint body_eof             # ... up to the last one
    cdef Py_ssize_t body_size
    cdef object waiting            # CN_FINISH: the future the app waits on
    cdef object give_up            # CN_FINISH: the timer that cancels an app that does not end
    cdef bint giving_up            # ... it fired: the app gets a CancelledError
    cdef bint cancelled_app        # ... which ends it quietly, not the layer's caller
    cdef bint in_plugin            # counted in the plugin's in-flight gauge: process_request runs
    cdef long long t0              # when process_request started, if this request is timed (else 0)

    def __await__(self):
        return self

    def send(self, value):
        cdef PyObject *out = NULL
        return _sent(self._step(value, None, &out), out)

    def throw(self, typ, val=None, tb=None):
        cdef PyObject *out = NULL
        return _sent(self._step(None, _exception_of(typ, val, tb), &out), out)

    def close(self):
        # Only when whoever awaits us is closed without the loop (a coroutine dropped or
        # closed): close what runs, as a coroutine's close would.
        if self.state == CN_DONE:
            return
        self.state = CN_DONE
        self.mode = CN_DROP
        for it in (self.sub, self.plugin, self.app if not self.app_done else None):
            if it is not None and hasattr(it, "close"):
                it.close()
        self._clear()

    def _give_up_on_app(self):
        # DISCARD_GRACE after its response was dropped the app is still running: cancel it
        self.give_up = None
        self.giving_up = self.cancelled_app = True
        _log.warning("plugin %r %s: the app was still running %.1f s after its response was discarded; "
                     "cancelled it", self.entry.name, self.entry.version, DISCARD_GRACE)
        w = self.waiting
        if w is not None and not w.done():
            w.cancel()      # its task throws CancelledError into us, and we into the app

    def _wake(self, _):
        # a done callback of the future the app waits on (see _wait_for)
        if self.waker is not None and not self.waker.done():
            self.waker.set_result(None)

    cdef int _step(self, object value, object exc, PyObject **out) except -1:
        # One step: 1 yielded *out (for the loop), 0 returned *out; raises what ends the layer.
        cdef int r
        cdef int st
        cdef PyObject *res
        while True:
            st = self.state
            if st == CN_APP or st == CN_FINISH:
                r = self._run_app(value, exc, out)
                if r >= 0:
                    return r
                value = exc = None
                continue
            if st == CN_PLUGIN:
                try:
                    r = _advance(self.plugin, value, exc, out)
                except BaseException as failure:
                    self._plugin_over()
                    self._plugin_failed(failure)
                    value = exc = None
                    continue
                if r == 1:
                    return 1
                result = _take(out[0])
                out[0] = NULL
                self._plugin_over()
                self._plugin_returned(result)
                value = exc = None
                continue
            if st == CN_START or st == CN_OWN:
                try:
                    r = _advance(self.sub, value, exc, out)
                except BaseException as failure:
                    self.sub = None
                    value = exc = None
                    self._sub_failed(st, failure)
                    continue
                if r == 1:
                    return 1
                Py_DECREF(<object>out[0])
                out[0] = NULL
                self.sub = None
                value = exc = None
                if st == CN_START:
                    self._sent_one(None)
                else:
                    self._finish()
                continue
            if st == CN_INIT:
                self.state = CN_PLUGIN
                self.entry.stats.calls += 1
                self.entry.stats.inflight += 1
                self.in_plugin = True
                if _sample_layer():
                    self.t0 = _now_ns()
                res = _call_hook(<PyObject *>self.entry.req_hook, self.req, self.cn)
                if res == NULL:
                    self._plugin_over()
                    try:
                        _reraise()
                    except BaseException as failure:
                        self._plugin_failed(failure)
                    continue
                self.plugin = _take(res)
                continue
            # CN_DONE
            failure = self.raise_after
            self._clear()
            if failure is not None:
                raise failure
            Py_INCREF(None)
            out[0] = <PyObject *>None
            return 0

    cdef int _run_app(self, object value, object exc, PyObject **out) except -2:
        # CN_APP / CN_FINISH: the app runs on, its awaits passed through. -1: it has ended.
        cdef int r
        if self.app is None or self.app_done:
            self.state = CN_DONE
            return -1
        if exc is None:
            if self.parked is not None:
                # the app still waits on a future (a post had woken the driver): hand it to the loop
                fut = self.parked
                self.parked = None
                if not fut.done():
                    fut._asyncio_future_blocking = True
                    Py_INCREF(fut)
                    out[0] = <PyObject *>fut
                    return 1
            if self.to_throw is not None:
                exc = self.to_throw
                self.to_throw = None
        if self.giving_up and self.state == CN_FINISH:
            self.giving_up = False
            if exc is None or not isinstance(exc, _asyncio.CancelledError):
                exc = _asyncio.CancelledError()
        self.waiting = None
        try:
            r = _advance(self.app, value, exc, out)
        except BaseException as failure:
            self.app_done = True
            if self.state == CN_APP:
                # after its response started: the server sees it (and closes the connection)
                self.state = CN_DONE
                self._clear()
                raise
            if self.raise_after is None and not (
                    self.cancelled_app and isinstance(failure, _asyncio.CancelledError)):
                self.raise_after = failure
            self.state = CN_DONE
            return -1
        if r == 1:
            if out[0] == <PyObject *>_HANDOFF:
                # cannot happen: after the start no send of the app hands a message over
                Py_DECREF(_HANDOFF)
                out[0] = NULL
                raise RuntimeError(f"covet-pipe: call_next layer of plugin {self.entry.name!r} got a "
                                   "message after the response started (a bug in covet-pipe)")
            if self.state == CN_FINISH:
                self.waiting = <object>out[0]
            return 1
        Py_DECREF(<object>out[0])
        out[0] = NULL
        self.app_done = True
        self.state = CN_DONE
        return -1

    cdef void _sub_failed(self, int st, object failure) except *:
        # What the sub of CN_START / CN_OWN raised.
        if st == CN_START:
            # the server's send raised: the app (or the task whose send it was) sees it raise
            self._sent_one(failure)
            return
        if self.raise_after is None:
            self.raise_after = failure
        self._finish()

    cdef void _sent_one(self, object failure) except *:
        # CN_START: a message is out, or its send raised *failure*: answer whoever sent it (the
        # app's own send answers at its next step), then send the next post or let the app go on.
        fut = self.sub_fut
        self.sub_fut = None
        if fut is None and self.unacked:
            self.unacked = False
            fut = self.message_fut       # the start came from a post (None: the app's own send)
            self.message_fut = None
        if fut is not None:
            _resolve(fut, failure)
        elif failure is not None:
            self.to_throw = failure
        if self.pending:
            message, self.sub_fut = self.pending.popleft()
            self.sub = _await_iter(self._filtered(message, self.next_mode))
            return
        self.mode = self.next_mode
        self.state = CN_APP

    cdef int _plugin_returned(self, object result) except -1:
        cdef StreamedResponse sr
        if result is not None and result is self.resp:
            sr = self.resp
            if sr._consumed:
                return self._plugin_failed(RuntimeError(
                    f"plugin {self.entry.name!r} read the body of call_next's response in process_request "
                    "and returned that response; return a new Response with the body you read"))
            if sr._empty:
                return self._own(sr._fallback())
            if self.ws and sr.status != sr._orig_status and sr._start["type"] != "websocket.http.response.start":
                # the plugin refuses the handshake the app accepted (or refuses it with its own status)
                return self._own(Response(sr.status, sr.headers, b""))
            start = _start_message(self, sr)
            sr._freeze((self.entry.name, "process_request"), 0)   # later edits raise ResponseStartedError
            self.sub = _await_iter(self.srv_send(start))
            self.state = CN_START
            return 0
        if not isinstance(result, Response):
            return self._plugin_failed(TypeError(
                f"process_request of call_next plugin {self.entry.name!r} returned {type(result).__name__}; "
                "it must return the Response from call_next or one it made"))
        _count_short(self.entry.stats, (<Response>result)._status)
        return self._own(<Response>result)

    cdef int _plugin_failed(self, object failure) except -1:
        cdef Entry e = self.entry
        self.plugin = None
        if failure is self.app_error:
            if isinstance(failure, Exception):
                # The app raised before its response and the plugin let it through: answer a 500
                # as a plugin's own failure would be answered (the client sees no traceback).
                _app_log.error(
                    "the app raised before it started its response to %s %s: %s: %s -- covet-pipe answered "
                    "%d (the exception went through call_next of plugin %r %s)",
                    _printable(str(self.req.method), 32), _printable(str(self.req.path), 512),
                    type(failure).__name__, _printable(str(failure), 2048), _failure_status(failure), e.name,
                    e.version, exc_info=failure)
                return self._own(_error_response(_failure_status(failure)))
            self.raise_after = failure          # a cancellation goes on up
            return self._finish()
        if isinstance(failure, (ClientDisconnected, _ClientGone)):
            return self._finish()               # reading the body, the client left: no answer
        if isinstance(failure, _BodyTooLarge):
            return self._own(Response.json(
                {"error": "Request body too large for the plugins that read it"}, 413))
        if not isinstance(failure, Exception):
            self.raise_after = failure
            return self._finish()
        e.stats.errors += 1
        skip = e.fail_open and not self.cn._called
        _log.error("plugin %r %s raised in process_request (call_next style): %s: %s -- %s", e.name,
                   e.version, type(failure).__name__, _printable(str(failure), 2048),
                   "skipped (failure_policy='open')" if skip else "the client got a 500", exc_info=failure)
        if skip:
            e.stats.skipped_open += 1
            self._start_receive()
            self.sub = _await_iter(self.downstream(self.outer.build_scope(), self.app_receive, self.srv_send))
            self.state = CN_OWN
            return 0
        return self._own(_error_response(500))

    cdef int _own(self, Response resp) except -1:
        # Send a response the layer makes (the plugin's, an error), then end the app.
        if self.ctx is None:
            self.ctx = make_request_context(self.req, self.req.scope.get("type", "http"))
        if self.ctx._receive is None:
            self.ctx._receive = self.srv_receive    # a streamed body watches it for a hang-up
        self.sub = _await_iter(_send_response(self.srv_send, resp, self.ctx))
        self.state = CN_OWN
        return 0

    cdef int _finish(self) except -1:
        # Drop the app's response and let it run to its end (CN_FINISH).
        cdef object fut
        self.state = CN_FINISH
        self.mode = CN_DROP
        if self.message_fut is not None:
            _resolve(self.message_fut, None)
            self.message_fut = None
        self.unacked = False
        if self.pending:
            for _, fut in self.pending:
                _resolve(fut, None)
            self.pending.clear()
        if self.puller is not None:
            # call_next or body_iterator still runs in another task: that task ends the app
            _log.error("plugin %r %s returned while call_next() or body_iterator was still running in "
                       "another task; await them in process_request", self.entry.name, self.entry.version)
            self.app = None
        elif self.app is not None and not self.app_done:
            self.give_up = _asyncio.get_running_loop().call_later(DISCARD_GRACE, self._give_up_on_app)
        return 0

    cdef void _plugin_over(self):
        # process_request returned or raised (or the layer ends with it still running): out of the
        # in-flight gauge, and timed if sampled (its time includes the downstream's until it answered).
        if self.in_plugin:
            self.in_plugin = False
            self.entry.stats.inflight -= 1
            if self.t0:
                _sampled(self.entry, self.t0)
                self.t0 = 0

    def __dealloc__(self):
        if self.in_plugin and self.entry is not None:
            self.entry.stats.inflight -= 1

    cdef void _clear(self):
        # The layer is over: drop what it holds, so nothing it made keeps a cycle alive.
        self._plugin_over()
        self.plugin = self.app = self.sub = self.resp = self.cn = self.req = self.ctx = None
        self.app_receive = self.app_error = self.message = self.raise_after = self.to_throw = None
        self.parked = self.wait = self.waker = self.pending = self.replay = self.waiting = None
        if self.give_up is not None:
            self.give_up.cancel()
            self.give_up = None

    cdef object _filtered(self, object message, int mode):
        # A message of the app's on its way to the server in *mode*.
        if mode == CN_NOBODY:
            return _nobody(self, message)
        return self.srv_send(message)

    cdef void _start_receive(self):
        if self.app_receive is None:
            self.app_receive = _new_app_receive(self)


cdef _Layer _run_call_next(Entry entry, object downstream, Request req, dict scope,
                           object receive, object send):
    """The awaitable that runs one call_next plugin around *downstream* and sends what it returns."""
    cdef _Layer layer = _Layer.__new__(_Layer)
    cdef CallNextRequest creq = CallNextRequest.__new__(CallNextRequest)
    cdef _Pull cn = _Pull.__new__(_Pull)
    # the chain's request as it is (its edits so far, its headers object): the plugin's edits
    # reach the hooks and plugins after it as if it had the same object
    creq.scope = scope
    creq._headers = req._headers
    creq._dirty = req._dirty
    creq._version = req._version
    creq._body = req._body
    creq._layer = layer
    cn.vectorcall = <void *>_call_next_vectorcall
    cn._layer = layer
    cn._kind = PULL_CALL_NEXT
    layer.entry = entry
    layer.downstream = downstream
    layer.srv_receive = receive
    layer.srv_send = send
    layer.outer = req
    if type(downstream) is _Downstream:
        layer.ws = _eq((<_Downstream>downstream).protocol, "websocket")
    else:
        layer.ws = scope.get("type") == "websocket"
    layer.req = creq
    layer.cn = cn
    return layer


cdef int _layer_step(PyObject *op, PyObject *arg, PyObject **out) except -1:
    out[0] = NULL
    return (<_Layer>op)._step(<object>arg, None, out)


covet_cn_install(_Layer, _layer_step)
