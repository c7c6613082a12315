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
        return _downstream_call(self, scope, receive, send)    # _callnext.pxi


async def _raising(exc):
    raise exc


async def _run(app, Snapshot snap, tuple segs, Py_ssize_t si, str protocol,
               dict scope, receive, send, services, Request req):
    """One request through segment ``si`` of a snapshot, then downstream."""
    cdef Segment seg = <Segment>segs[si]
    cdef RequestContext ctx = RequestContext.__new__(RequestContext)
    cdef Response resp
    cdef _Downstream down
    cdef _Send sw
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
            ctx._receive = receive      # (a streamed answer watches for the client hanging up)
            await _answer(seg, ctx, resp, send)
            return
        scope = req.build_scope()
        sw = _new_send(send, seg, ctx)
        try:
            if seg.wrapper is None:
                if si == 0:
                    _freeze_request(req, seg, ctx._ran)     # (below a call_next plugin: not yet)
                await app(scope, receive, sw)
            else:
                down = _Downstream.__new__(_Downstream)
                down.app = app
                down.snap = snap
                down.segs = segs
                down.si = si + 1
                down.protocol = protocol
                down.services = services
                down.req = req
                await _run_call_next(seg.wrapper, down, req, scope, receive, sw)
        except Exception as exc:
            if not _app_error_answered(sw, exc):
                raise
            await _answer_app_error(sw, exc)
    finally:
        if seg.any_native_done:
            _native_done(seg, ctx)
        _release(snap)


cdef inline void _freeze_request(Request req, Segment seg, Py_ssize_t ran):
    # The app has the scope: later edits of the request would not reach it.
    req._frozen = seg
    req._frozen_ran = ran
    if req._headers is not None:
        req._headers._freeze(seg, ran, True)


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
    cdef _Send sw = None
    req.scope = scope
    ctx.request = req
    ctx.protocol = protocol
    ctx._services = services
    snap.inflight += 1
    try:
        resp = _req_phase(seg, req, ctx)     # a simple segment's hooks are sync: none suspends
        if resp is not None:
            ctx._receive = receive
            return _answer_and_release(seg, ctx, resp, send, snap)
        if req._dirty or req._headers is not None:
            scope = req.build_scope()
        _freeze_request(req, seg, ctx._ran)
        sw = _new_send(send, seg, ctx)
        if seg.any_native_done:
            return _app_run_done(app(scope, receive, sw), snap, seg, ctx, sw)
        return covet_apprun_new(app(scope, receive, sw), snap, _release_cb, sw, _app_failed)
    except Exception as exc:
        if sw is not None and _app_error_answered(sw, exc):     # app() itself raised
            return _answer_and_release(seg, ctx, _error_response(_failure_status(exc)), send, snap)
        if seg.any_native_done:
            _native_done(seg, ctx)
        _release(snap)
        raise
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


async def _app_run_done(coro, Snapshot snap, Segment seg, RequestContext ctx, _Send sw):
    """The app's coroutine (answered for if it raises first), then the native plugins' on_request_done."""
    try:
        try:
            await coro
        except Exception as exc:
            if not _app_error_answered(sw, exc):
                raise
            await _answer_app_error(sw, exc)
    finally:
        _native_done(seg, ctx)
        _release(snap)


# An app that raises before its response started: the pipeline answers the 500 itself, as it
# does for a plugin that fails, and the response hooks of the plugins that ran see that 500.
# Once the start has gone out the exception goes on to the server (which closes the connection).

cdef object _app_log = _safe_logger("covet_pipe.app")


cdef bint _app_error_answered(_Send sw, object exc) except -1:
    # Whether the pipeline answers for exc (then it is logged here, once): HTTP only (a websocket's
    # server refuses the handshake itself), and only while no response start went to the server:
    # none came through sw, or the one that came waits for body transforms (held).
    cdef str how
    if sw.ctx.protocol != "http":
        return False
    if sw.state == _S_WAIT:
        how = " (the response hooks of the plugins that ran saw it)" if sw.hooks else ""
    elif sw.state == _S_XFORM and sw.held is not None:
        how = " (the app's start was still waiting for its body)"
        sw.held = None
        sw.hooks = False    # they saw the app's response already: the 500 goes out as it is
    else:
        return False
    sw.state = _S_DROP      # anything the app's other tasks still send goes nowhere
    req = sw.ctx.request
    _app_log.error(
        "the app raised before it started its response to %s %s: %s: %s -- covet-pipe answered %d%s",
        _printable(str(req.method), 32), _printable(str(req.path), 512), type(exc).__name__,
        _printable(str(exc), 2048), _failure_status(exc), how, exc_info=exc)
    return True


def _answer_app_error(_Send sw, exc):
    # 500, or the 5xx the exception asks for (a storage engine or sandbox that is unavailable: 503)
    if sw.hooks:
        return _answer(sw.seg, sw.ctx, _error_response(_failure_status(exc)), sw.send)
    return _send_response(sw.send, _error_response(_failure_status(exc)), sw.ctx)


cdef object _app_failed(object owner, object exc):
    # _apprun.h's on_error: the awaitable that answers for exc, or None to let it go on.
    if _app_error_answered(<_Send>owner, exc):
        return _answer_app_error(<_Send>owner, exc)
    return None


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
