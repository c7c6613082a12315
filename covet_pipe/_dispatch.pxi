# The request path: pick the chain, run the phases, call the app (its send wrapped: _sending.pxi).
# Included by _core.pyx after _sending.pxi.


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
        cdef Segment seg = <Segment>self.segs[self.si]
        if seg.count == 0 and seg.wrapper is None:
            return self.app(scope, receive, send)
        self.req.scope = scope
        return _run(self.app, self.snap, self.segs, self.si, self.protocol,
                    scope, receive, send, self.services, self.req)


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
