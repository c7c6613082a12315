# The request path: pick the chain, run the phases, call the app, wrap its send.
# Included by _core.pyx after _phases.pxi.


cdef Response _response_of(dict message, bint accept):
    cdef Response resp = Response.__new__(Response)
    if accept:
        resp.status = 101
    else:
        resp.status = message.get("status", 200)
    resp._orig_status = resp.status
    resp._raw_src = message.get("headers")
    resp.body = None
    return resp


cdef dict _with_changes(dict message, Response resp):
    message = dict(message)
    if message["type"] != "websocket.accept":
        message["status"] = resp.status
    if resp._headers is not None:
        message["headers"] = resp._headers._raw
    return message


async def _send_response(send, Response resp, RequestContext ctx):
    """Send a response the pipeline made (a short-circuit or an error)."""
    if ctx.protocol == "websocket":
        await _deny_websocket(send, resp, ctx)
        return
    await send({"type": "http.response.start", "status": resp.status,
                "headers": resp.asgi_headers()})
    await send({"type": "http.response.body", "body": resp.body or b"", "more_body": False})


async def _deny_websocket(send, Response resp, RequestContext ctx):
    # Refuse the handshake with the plugin's status where the server supports
    # it (the websocket.http.response extension), else with a close (403).
    ext = ctx.request.scope.get("extensions") or {}
    if "websocket.http.response" in ext:
        await send({"type": "websocket.http.response.start", "status": resp.status,
                    "headers": resp.asgi_headers()})
        await send({"type": "websocket.http.response.body", "body": resp.body or b"",
                    "more_body": False})
    else:
        await send({"type": "websocket.close", "code": 1008,
                    "reason": _reason_phrase(resp.status)})


async def _answer(Segment seg, RequestContext ctx, Response resp, send):
    """A request hook answered: run the response phase for those that ran, then send."""
    cdef Response err
    if seg.any_resp and ctx._ran:
        err = _resp_phase(seg, ctx, resp)
        if ctx._pending is not None:
            err = await _resp_phase_async(seg, ctx)
        if err is not None:
            resp = err
    await _send_response(send, resp, ctx)


@cython.final
@cython.freelist(64)
cdef class _Send:
    """The app's ``send``, wrapped: runs the response phase at the response start."""
    cdef void *vectorcall     # the vectorcall slot (PEP 590): apps call send(message) without a tuple
    cdef object send
    cdef Segment seg
    cdef RequestContext ctx
    cdef bint started
    cdef bint replaced

    def __call__(self, message):
        return self._call(message)

    cdef object _call(self, message):
        cdef Response resp, err
        if self.started:
            if self.replaced:
                return _DONE       # the app's body of a response we replaced
            return self.send(message)
        t = message["type"]
        if t == "http.response.start" or t == "websocket.accept":
            self.started = True
            resp = _response_of(message, t == "websocket.accept")
            err = _resp_phase(self.seg, self.ctx, resp)
            if self.ctx._pending is not None:
                return self._start_async(message, resp)
            return _started(self, message, resp, err)
        return self.send(message)

    async def _start_async(self, dict message, Response resp):
        # A response hook suspended: the rest of the phase, then the start as above.
        cdef Response err = await _resp_phase_async(self.seg, self.ctx)
        await _started(self, message, resp, err)


cdef inline object _started(_Send sw, dict message, Response resp, Response err):
    # After the response phase: the response that replaces the app's, or its edited start.
    if err is not None:
        sw.replaced = True
        if message["type"] == "websocket.accept":
            return sw.send({"type": "websocket.close", "code": 1011})
        return _send_response(sw.send, err, sw.ctx)
    if resp._changed():
        message = _with_changes(message, resp)
    return sw.send(message)


cdef object _send_vectorcall(object self, PyObject **args, size_t nargsf, PyObject *kwnames):
    # PEP 590 signature: borrowed self and args, a new reference back, NULL (an exception) on error
    if (nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET) != 1 or kwnames != NULL:
        raise TypeError("send() takes exactly one positional argument (the ASGI message)")
    return (<_Send>self)._call(<object>args[0])


cdef _Send _new_send(object send, Segment seg, RequestContext ctx):
    cdef _Send sw = _Send.__new__(_Send)
    sw.vectorcall = <void *>_send_vectorcall
    sw.send = send
    sw.seg = seg
    sw.ctx = ctx
    return sw


cdef void _enable_send_vectorcall():
    # Cython gives extension types tp_call only; give _Send the vectorcall slot as well
    # (tp_call stays, consistent with it), so `await send(message)` builds no argument tuple.
    cdef _Send probe = _Send.__new__(_Send)
    cdef PyTypeObject *t = <PyTypeObject *>_Send
    t.tp_vectorcall_offset = <Py_ssize_t>(<char *>&probe.vectorcall - <char *><PyObject *>probe)
    t.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL


_enable_send_vectorcall()


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


async def _read_body(Request req, receive):
    """Read the whole request body for plugins that need it; return a replaying receive."""
    cdef list chunks = []
    cdef Py_ssize_t size = 0
    while True:
        message = await receive()
        t = message["type"]
        if t == "http.disconnect":
            raise _ClientGone()
        if t != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    req._body = b"".join(chunks)
    return _Replay(req._body, receive)


cdef class _Replay:
    """A receive that first hands the app the body a plugin already read."""
    cdef object body
    cdef object receive
    cdef bint done

    def __init__(self, body, receive):
        self.body = body
        self.receive = receive

    def __call__(self):
        if self.done:
            return self.receive()
        self.done = True
        return _ready({"type": "http.request", "body": self.body, "more_body": False})


async def _ready(value):
    return value


cdef class _Downstream:
    """An ASGI app that runs the chain from segment ``si`` on (for call_next plugins)."""
    cdef object app
    cdef Snapshot snap
    cdef tuple segs
    cdef Py_ssize_t si
    cdef str protocol
    cdef object services
    cdef Request req

    def __call__(self, scope, receive, send):
        return _downstream_call(self, scope, receive, send)    # _callnext.pxi


async def _run(app, Snapshot snap, tuple segs, Py_ssize_t si, str protocol,
               dict scope, receive, send, services, Request req):
    """One request through segment ``si`` of a snapshot, then downstream."""
    cdef Segment seg = <Segment>segs[si]
    cdef RequestContext ctx = RequestContext.__new__(RequestContext)
    cdef Response resp
    cdef _Downstream down
    if req is None:
        req = Request.__new__(Request)
        req.scope = scope
    ctx.request = req
    ctx.protocol = protocol
    ctx._services = services
    snap.inflight += 1
    try:
        if seg.needs_body and req._body is None and protocol == "http":
            # (a websocket has no request body: its receive() brings frames)
            try:
                receive = await _read_body(req, receive)
            except _BodyTooLarge:
                await _send_response(send, Response.json(
                    {"error": "Request body too large for the plugins that read it"}, 413), ctx)
                return
            except _ClientGone:
                return
        resp = _req_phase(seg, req, ctx)
        if ctx._pending is not None:
            resp = await _req_phase_async(seg, req, ctx)
        if resp is not None:
            await _answer(seg, ctx, resp, send)
            return
        scope = req.build_scope()
        if seg.any_resp and ctx._ran:
            send = _new_send(send, seg, ctx)
        if seg.wrapper is None:
            await app(scope, receive, send)
        else:
            down = _Downstream.__new__(_Downstream)
            down.app = app
            down.snap = snap
            down.segs = segs
            down.si = si + 1
            down.protocol = protocol
            down.services = services
            down.req = req
            await _run_call_next(seg.wrapper, down, req, scope, receive, send)
    finally:
        if seg.any_native_done:
            _native_done(seg, ctx)
        _release(snap)


cdef inline void _release(Snapshot snap):
    snap.inflight -= 1
    if snap.inflight == 0 and snap.on_idle is not None:
        snap.on_idle(snap)


cdef object _run_simple(object app, Snapshot snap, Segment seg, str protocol, dict scope,
                        object receive, object send, object services):
    """A request through a simple segment: request hooks now, then the app's own coroutine."""
    cdef Request req = Request.__new__(Request)
    cdef RequestContext ctx = RequestContext.__new__(RequestContext)
    cdef Response resp
    req.scope = scope
    ctx.request = req
    ctx.protocol = protocol
    ctx._services = services
    snap.inflight += 1
    try:
        resp = _req_phase(seg, req, ctx)     # a simple segment's hooks are sync: none suspends
        if resp is not None:
            return _answer_and_release(seg, ctx, resp, send, snap)
        if req._dirty or req._headers is not None:
            scope = req.build_scope()
        if seg.any_resp and ctx._ran:
            send = _new_send(send, seg, ctx)
        if seg.any_native_done:
            return _app_run_done(app(scope, receive, send), snap, seg, ctx)
        return covet_apprun_new(app(scope, receive, send), snap, _release_cb)
    except BaseException:
        if seg.any_native_done:
            _native_done(seg, ctx)
        _release(snap)
        raise


cdef void _release_cb(PyObject *snap) noexcept:
    # Called by _apprun.h when the app's coroutine ends (or is dropped).
    try:
        _release(<Snapshot>snap)
    except BaseException:
        pass  # an on_idle callback failed: the drain times out instead


covet_apprun_ready()


async def _app_run_done(coro, Snapshot snap, Segment seg, RequestContext ctx):
    """_app_run, then the native plugins' on_request_done."""
    try:
        await coro
    finally:
        _native_done(seg, ctx)
        _release(snap)


async def _answer_and_release(Segment seg, RequestContext ctx, Response resp, send, Snapshot snap):
    try:
        await _answer(seg, ctx, resp, send)
    finally:
        if seg.any_native_done:
            _native_done(seg, ctx)
        _release(snap)


cdef class PipelineCore:
    """The compiled half of covet_pipe.Pipeline: picks the chain for a scope.

    The subclass contract (covet_pipe.asgi.Pipeline keeps it; _core.pyi declares it):
    ``_first_request(scope, receive, send)`` serves a request that arrives while the
    chain is not ready (it starts the plugins), and ``_lifespan(scope, receive, send)``
    runs a lifespan scope; both return awaitables.
    """
    cdef public object app
    cdef public Chain chain

    def call(self, scope, receive, send):
        """ASGI 3 entry: ``await pipeline(scope, receive, send)``."""
        cdef Chain chain = self.chain
        cdef Snapshot snap
        cdef tuple segs
        t = scope["type"]
        if t == "http":
            if not chain.ready:
                return self._first_request(scope, receive, send)
            snap = chain.current
            segs = snap.http
            if not segs:
                return self.app(scope, receive, send)
            if (<Segment>segs[0]).simple:
                return _run_simple(self.app, snap, <Segment>segs[0], "http", scope, receive, send,
                                   chain.services)
            return _run(self.app, snap, segs, 0, "http", scope, receive, send,
                        chain.services, None)
        if t == "websocket":
            if not chain.ready:
                return self._first_request(scope, receive, send)
            snap = chain.current
            segs = snap.ws
            if not segs:
                return self.app(scope, receive, send)
            return _run(self.app, snap, segs, 0, "websocket", scope, receive, send,
                        chain.services, None)
        if t == "lifespan":
            return self._lifespan(scope, receive, send)
        # another protocol of covet-pipe's own listener ("resp" ...): the
        # plugins that list it run; its answers use the http.response messages
        if not chain.ready:
            return self._first_request(scope, receive, send)
        snap = chain.current
        segs = snap._by_protocol.get(t)
        if not segs:
            return self.app(scope, receive, send)
        return _run(self.app, snap, segs, 0, t, scope, receive, send, chain.services, None)
