# The hook phases: request hooks in (priority, name) order, response hooks reversed,
# and what a failing hook turns into. Included by _core.pyx.


cdef object _log = _safe_logger("covet_pipe.plugins")   # tracebacks with escaped messages

cdef enum:
    #: Hook timing is sampled: the hooks of one request in (SAMPLE_MASK + 1) are timed.
    SAMPLE_MASK = 63
    #: A plugin that declares needs_body gets at most this many bytes (else 413).
    MAX_BODY = 16 * 1024 * 1024

cdef unsigned long long _tick = 0
cdef unsigned long long _layer_tick = 0


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline bint _sample_request(RequestContext ctx) noexcept:
    # Whether this request's hooks are timed (its response hooks too: ctx._sample).
    global _tick
    _tick += 1
    ctx._sample = (_tick & SAMPLE_MASK) == 0
    return ctx._sample


cdef inline bint _sample_layer() noexcept:
    # Whether a call_next layer times its plugin's process_request (one in SAMPLE_MASK + 1).
    # (a tick of its own: a request's segments tick _tick a fixed number of times, which could keep
    # the layer's turn off the sampled one for good)
    global _layer_tick
    _layer_tick += 1
    return (_layer_tick & SAMPLE_MASK) == 0


cdef inline void _sampled(Entry e, long long t0) noexcept:
    # One timed hook call: wall time, so an async hook's waits count.
    _count_sample(e.stats, _now_ns() - t0)


cdef inline object _take(PyObject* res):
    # A call hands back a new reference; own it as an object.
    cdef object o = <object>res
    Py_XDECREF(res)
    return o


cdef extern from "_hookcall.h":
    # NULL: it raised (the loops decide what a failure means, without a try block per hook)
    PyObject *_call_hook "covet_call_hook" (PyObject *hook, object a, object b)
    int _reraise "covet_reraise" () except -1
    # PyIter_Send unchecked: -1 it raised (*res NULL), 0 it returned, 1 it yielded (*res)
    int _step "PyIter_Send" (PyObject *coro, object arg, PyObject **res)


cdef bint _hook_failed(Entry e, str where, object exc):
    # Rare path: count, log under the plugin's name, say what the client got.
    e.stats.errors += 1
    if e.fail_open:
        e.stats.skipped_open += 1
    _log.error(
        "plugin %r %s raised in %s: %s: %s -- %s", e.name, e.version, where,
        type(exc).__name__, _printable(str(exc), 2048),      # the message may quote client bytes
        "skipped for this request (failure_policy='open')" if e.fail_open
        else f"the client got a {_failure_status(exc)} (failure_policy='closed'); fix the plugin or set "
             "failure_policy='open'",
        exc_info=exc)
    return e.fail_open


cdef int _failure_status(object exc):
    # 500, or the status an exception asks for (503 from an unavailable sandbox).
    status = getattr(exc, "http_status", 500)
    return status if type(status) is int and 500 <= status <= 599 else 500


cdef Response _as_response(Entry e, object r):
    # r is neither None nor CONTINUE.
    if type(r) is _Action:
        if (<_Action>r).kind == ACT_CONTINUE:
            return None
        return (<_Action>r).response
    if isinstance(r, Response):
        return <Response>r
    raise TypeError(
        f"process_request of plugin {e.name!r} returned {type(r).__name__} ({r!r}); "
        "return None, MiddlewareAction.CONTINUE, MiddlewareAction.respond(...) or "
        "MiddlewareAction.reject(...)")


cdef bint _on_paths(tuple paths, Request req) except -1:
    # Whether the request's route path (path less root_path, as routing.route_path) is one of *paths*
    # (exactly, or under one that ends in "/"). Only entries that declare paths pay for it.
    cdef str path
    cdef object p
    cdef dict scope = req.scope
    root = scope.get("root_path")
    if root:
        path = _route_path(scope)
    else:
        path = <str>scope.get("path", "/")
    for p in paths:
        if path == <str>p or ((<str>p).endswith("/") and path.startswith(<str>p)):
            return True
    return False


cdef inline void _skip(RequestContext ctx, Entry e):
    if ctx._skipped is None:
        ctx._skipped = set()
    ctx._skipped.add(e.name)


@cython.final
cdef class _Suspension:
    """An async hook that really waits: its phase's loop stopped at it; the async driver goes on."""
    cdef object rest           # the rest of the hook's coroutine (awaitable)
    cdef Py_ssize_t i          # the hook's index in the segment
    cdef long long t0          # when it started, if this request is timed
    cdef Response resp         # the response phase: the response, and the failure response so far
    cdef Response err


cdef inline _Suspension _suspended(RequestContext ctx, Py_ssize_t i, PyObject* coro,
                                   PyObject* first, long long t0):
    # Takes over both new references: the hook's coroutine and what it yielded.
    cdef object c = _take(coro)
    cdef object y = _take(first)
    cdef _Suspension s = _Suspension.__new__(_Suspension)
    s.rest = _resume_of(c, y)
    s.i = i
    s.t0 = t0
    ctx._pending = s
    return s


cdef inline _Suspension _awaiting(RequestContext ctx):
    # The suspension the driver takes over (once); the loop may leave a new one.
    cdef _Suspension s = <_Suspension>ctx._pending
    ctx._pending = None
    return s


cdef Response _req_failed(RequestContext ctx, Entry e, Py_ssize_t i, object exc):
    # A request hook raised: fail-open skips it (None), fail-closed answers now.
    if _hook_failed(e, "process_request", exc):
        _skip(ctx, e)
        return None
    ctx._ran = i
    return _error_response(_failure_status(exc))


cdef inline Response _answered(Entry e, object r):
    # What a request hook returned, r neither None nor CONTINUE: the Response that answers now.
    cdef Response resp = _as_response(e, r)
    if resp is not None:
        _count_short(e.stats, resp._status)
    return resp


cdef Response _req_answered(RequestContext ctx, Entry e, Py_ssize_t i, object r):
    # _answered for the loop, which has no try block: a value that is no answer fails the hook.
    try:
        return _answered(e, r)
    except Exception as exc:
        return _req_failed(ctx, e, i, exc)


cdef object _raised():
    # The exception a hook call left set (it returned NULL), caught as `except Exception`
    # catches it; any other (a cancellation, KeyboardInterrupt) goes on up.
    try:
        _reraise()
    except Exception as exc:
        return exc


# The two builds of each hook loop (one source, compiled twice: `if _Loop is _Full` is
# decided by the compiler). Lean: the segment's hooks of that direction are all sync and
# this request is not timed, so the loop reads no clock and asks no hook whether it waits.
ctypedef struct _Lean:
    char unused
ctypedef struct _Full:
    char unused
ctypedef fused _Loop:
    _Lean
    _Full

cdef _Lean _LEAN
cdef _Full _FULL


cdef inline Response _req_phase(Segment seg, Request req, RequestContext ctx):
    """Run the request hooks of a segment, in (priority, name) order.

    Returns None to go on to the app, or the Response that answers now. Sets
    ctx._ran: the response phase unwinds exactly hooks[:ctx._ran]. An async hook
    runs eagerly; when it really suspends the loop stops with it in ctx._pending
    (and returns None): the caller then awaits _req_phase_async for the rest.
    """
    if _sample_request(ctx) or seg.any_async_req:
        return _req_hooks(_FULL, seg, req, ctx, 0)
    return _req_hooks(_LEAN, seg, req, ctx, 0)


cdef Response _req_hooks(_Loop how, Segment seg, Request req, RequestContext ctx, Py_ssize_t start):
    # The request loop, from hook `start` on (0, or the one after a suspended hook).
    cdef Py_ssize_t i
    cdef Entry e
    cdef PyObject* coro          # an async hook's coroutine, stepped once
    cdef Response resp
    cdef NativeSlot *slot
    cdef int rc
    cdef PyObject* res           # what a hook returned (a new reference), NULL: it raised
    cdef bint fresh = False      # the native view matches the request (no edit since)
    cdef long long t0 = 0
    cdef bint sample = _Loop is _Full and ctx._sample
    ctx._seg = seg
    for i in range(start, seg.count):
        slot = &seg.slots[i]
        ctx._ran = ctx._reached = i + 1
        if slot.req != NULL:
            # Native: a direct C call; runs of them touch no Python object.
            if not fresh:
                _ensure_view(ctx)
                fresh = True
            slot.calls[0] += 1
            ctx._cur_i = i
            if sample:
                t0 = _now_ns()
            rc = slot.req(slot.instance, <covet_request_host_ptr><void *>ctx, &ctx._view)
            if sample:
                _sampled(<Entry>seg.hooks[i], t0)
            if ctx._host_edited:
                ctx._host_edited = fresh = False
            if rc != COVET_OK:
                resp = _native_request_outcome(seg, ctx, i, rc)
                if resp is not None:
                    return resp
            continue
        if slot.native:
            continue
        e = <Entry>seg.hooks[i]
        if e.paths is not None and not _on_paths(e.paths, req):
            if e.resp_hook is not None:
                _skip(ctx, e)           # not on its paths: its response hook does not run either
            continue
        if e.req_hook is None:
            continue
        fresh = False
        ctx._cur = e
        e.stats.calls += 1
        if sample:
            t0 = _now_ns()
        res = _call_hook(<PyObject*>e.req_hook, req, ctx)
        if _Loop is _Full:
            if e.req_async and res != NULL:
                # Eager: most async hooks finish without waiting; only a real
                # suspension goes through the event loop.
                coro = res
                if _step(coro, None, &res) == 1:
                    _suspended(ctx, i, coro, res, t0)
                    return None
                Py_XDECREF(coro)
            if sample and res != NULL:
                _sampled(e, t0)
        if res == NULL:
            resp = _req_failed(ctx, e, i, _raised())
        elif res == <PyObject*>None or res == <PyObject*>_CONTINUE:
            Py_XDECREF(res)
            continue
        else:
            resp = _req_answered(ctx, e, i, _take(res))
        if resp is not None:
            return resp
    return None


async def _req_phase_async(Segment seg, Request req, RequestContext ctx):
    """The rest of a request phase whose hook suspended: await it, then go on with the loop."""
    cdef _Suspension s
    cdef Entry e
    cdef Response resp
    while True:
        s = _awaiting(ctx)
        e = <Entry>seg.hooks[s.i]
        e.stats.inflight += 1          # waiting in this plugin's hook (the slow path alone counts it)
        try:
            try:
                r = await s.rest
            finally:
                e.stats.inflight -= 1
            if ctx._sample:
                _sampled(e, s.t0)
            resp = None if r is None or r is _CONTINUE else _answered(e, r)
        except Exception as exc:
            resp = _req_failed(ctx, e, s.i, exc)
        if resp is None:
            resp = _req_hooks(_FULL, seg, req, ctx, s.i + 1)
            if ctx._pending is not None:
                continue
        return resp


cdef inline Response _resp_phase(Segment seg, RequestContext ctx, Response resp):
    """Response hooks, reversed, for the plugins that ran; an error Response or None.

    A fail-closed failure replaces the response with a 500, and the hooks outside
    the failed one still unwind on that 500 (their request hooks ran). An async
    hook that suspends stops the loop as in _req_phase: the caller then awaits
    _resp_phase_async.
    """
    # (<Response>None: a call of a fused function is matched by its arguments' types)
    if ctx._sample or seg.any_async_resp:
        return _resp_hooks(_FULL, seg, ctx, resp, ctx._ran - 1, <Response>None)
    return _resp_hooks(_LEAN, seg, ctx, resp, ctx._ran - 1, <Response>None)


cdef Response _resp_failed(Entry e, object exc):
    # A response hook raised: fail-open skips it (None), fail-closed replaces the response.
    if _hook_failed(e, "process_response", exc):
        return None
    return _error_response(_failure_status(exc))


cdef Response _resp_hooks(_Loop how, Segment seg, RequestContext ctx, Response resp,
                          Py_ssize_t start, Response err):
    # The response loop, from hook `start` down to 0; err: the failure response so far.
    cdef Py_ssize_t i
    cdef Entry e
    cdef PyObject* coro          # an async hook's coroutine, stepped once
    cdef Response failed
    cdef NativeSlot *slot
    cdef int rc
    cdef PyObject* res           # what a hook returned (a new reference), NULL: it raised
    cdef _Suspension s
    cdef bint fresh = False
    cdef long long t0 = 0
    cdef bint sample = _Loop is _Full and ctx._sample
    cdef set skipped = ctx._skipped     # (only the request phase adds to it)
    ctx._seg = seg
    for i in range(start, -1, -1):
        slot = &seg.slots[i]
        if slot.resp != NULL:
            if skipped is not None and (<Entry>seg.hooks[i]).name in skipped:
                continue
            if not fresh:
                ctx._phase = 1
                ctx._resp = resp
                _ensure_view(ctx)
                fresh = True
            ctx._cur_i = i
            if sample:
                t0 = _now_ns()
            rc = slot.resp(slot.instance, <covet_request_host_ptr><void *>ctx, &ctx._view)
            if sample:
                _sampled(<Entry>seg.hooks[i], t0)
            if ctx._host_edited:
                ctx._host_edited = fresh = False
            if rc != COVET_OK:
                failed = _native_failed(<Entry>seg.hooks[i], ctx, rc, "on_response")
                if failed is not None:
                    err = resp = failed
                    fresh = False
            continue
        if slot.native:
            continue
        e = <Entry>seg.hooks[i]
        if e.resp_hook is None or (skipped is not None and e.name in skipped):
            continue
        fresh = False
        ctx._cur = e
        if sample:
            t0 = _now_ns()
        res = _call_hook(<PyObject*>e.resp_hook, resp, ctx)
        if _Loop is _Full:
            if e.resp_async and res != NULL:
                coro = res
                if _step(coro, None, &res) == 1:
                    s = _suspended(ctx, i, coro, res, t0)
                    s.resp = resp
                    s.err = err
                    return None
                Py_XDECREF(coro)
            if sample and res != NULL:
                _sampled(e, t0)
        if res != NULL:
            Py_XDECREF(res)
            continue
        failed = _resp_failed(e, _raised())
        if failed is not None:
            err = resp = failed
    return err


async def _resp_phase_async(Segment seg, RequestContext ctx):
    """The rest of a response phase whose hook suspended; the error Response or None."""
    cdef _Suspension s
    cdef Entry e
    cdef Response resp, err, failed
    while True:
        s = _awaiting(ctx)
        e = <Entry>seg.hooks[s.i]
        resp, err = s.resp, s.err
        e.stats.inflight += 1
        try:
            try:
                await s.rest
            finally:
                e.stats.inflight -= 1
            if ctx._sample:
                _sampled(e, s.t0)
        except Exception as exc:
            failed = _resp_failed(e, exc)
            if failed is not None:
                err = resp = failed
        err = _resp_hooks(_FULL, seg, ctx, resp, s.i - 1, err)
        if ctx._pending is None:
            return err
