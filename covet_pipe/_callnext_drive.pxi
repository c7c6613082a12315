# The call_next style, driving the app (included in _core.pyx after _callnext.pxi): what call_next
# starts (the rest of the chain and the app), and the loop that steps the app until it hands over
# a message, waits, or ends (_pull, for call_next and body_iterator).


cdef object _downstream_call(_Downstream down, dict scope, object receive, object send):
    # What a call_next plugin wraps: the rest of the chain from segment down.si, and the app.
    cdef Segment seg = <Segment>down.segs[down.si]
    if seg.count == 0:
        if seg.wrapper is None:
            try:
                return down.app(scope, receive, send)
            except Exception as exc:
                return _raising(exc)    # app() itself raised: the app's failure, when awaited
        if not seg.needs_body:
            # the next call_next plugin, with no hook before it: its layer needs no _run (the
            # request's first _run counts it in flight until the whole chain is done). *down* moves
            # on to the segment after it: the layer that called us is done with it.
            down.req.scope = scope
            down.si += 1
            return _run_call_next(seg.wrapper, down, down.req, scope, receive, send)
    down.req.scope = scope
    return _run(down.app, down.snap, down.segs, down.si, down.protocol, scope, receive, send,
                down.services, down.req)


cdef int _start_app(_Layer layer, object request) except -1:
    # call_next's first step: run the rest of the chain and the app, its messages to us.
    if request is None:
        request = layer.req
    elif not isinstance(request, Request):
        raise TypeError(f"plugin {layer.entry.name!r}: call_next() in process_request takes the Request, "
                        f"got {type(request).__name__}; pass it the request process_request was given")
    layer._start_receive()
    layer.mode = CN_CAPTURE
    try:
        if type(layer.downstream) is _Downstream:
            aw = _downstream_call(<_Downstream>layer.downstream, (<Request>request).build_scope(),
                                  layer.app_receive, _new_app_send(layer))
        else:
            aw = layer.downstream((<Request>request).build_scope(), layer.app_receive, _new_app_send(layer))
        layer.app = _await_iter(aw)
    except BaseException as failure:
        layer.app_done = True
        layer.app_error = failure
        raise
    return 0


cdef int _pull(_Layer layer, object value, object exc, PyObject **out) except -1:
    # Drive the app until it hands over a message (PULL_MESSAGE), waits (PULL_YIELD, *out is
    # the loop's), or ends (PULL_DONE); raises what it raised. *value*/*exc*: the answer to
    # the message handed over last, else what the loop sent back for the wait.
    cdef int r
    if layer.unacked:
        layer.unacked = False
        if layer.message_fut is not None:
            _resolve(layer.message_fut, exc)     # a post: its task gets the answer
            layer.message_fut = None
            value = exc = None
    while True:
        if layer.wait is not None:
            r = _advance(layer.wait, value, exc, out)
            value = exc = None
            if r == 1:
                return PULL_YIELD
            Py_DECREF(<object>out[0])
            out[0] = NULL
            layer.wait = None
            continue
        if exc is None and layer.pending:
            layer.message, layer.message_fut = layer.pending.popleft()
            layer.unacked = True
            return PULL_MESSAGE
        if layer.app_done:
            return PULL_DONE
        if exc is None:
            if layer.parked is not None:
                fut = layer.parked
                layer.parked = None
                if not fut.done():
                    layer.wait = _wait_for(layer, fut)
                    continue
            if layer.to_throw is not None:
                exc = layer.to_throw
                layer.to_throw = None
        layer.driving = True
        try:
            r = _advance(layer.app, value, exc, out)
        except BaseException as failure:
            layer.driving = False
            layer.app_done = True
            layer.app_error = failure
            raise
        layer.driving = False
        value = exc = None
        if r == 0:
            Py_DECREF(<object>out[0])
            out[0] = NULL
            layer.app_done = True
            return PULL_DONE
        if out[0] == <PyObject *>_HANDOFF:
            Py_DECREF(_HANDOFF)
            out[0] = NULL
            layer.unacked = True
            return PULL_MESSAGE
        if _is_future(<object>out[0]):
            # a future: wait for it, or for a send from another task, whichever comes first
            fut = _take(out[0])
            out[0] = NULL
            layer.wait = _wait_for(layer, fut)
            continue
        return PULL_YIELD       # a bare yield (asyncio.sleep(0)): the loop's


cdef inline void _resolve(object fut, object failure) except *:
    # Answer a post: its task's send returns, or raises *failure*.
    if fut is None or fut.done():
        return
    if failure is None:
        fut.set_result(None)
    else:
        fut.set_exception(failure)


cdef inline bint _is_future(object y) except -1:
    return hasattr(y, "add_done_callback")


async def _wait_for(_Layer layer, fut):
    """The app waits on *fut*: wait for it, or for a post from another task (it wakes us)."""
    fut._asyncio_future_blocking = False
    waker = layer.waker = fut.get_loop().create_future()
    wake = layer._wake
    fut.add_done_callback(wake)
    try:
        await waker
    except BaseException as exc:
        # We were cancelled: cancel what the app waits on, and let it see why.
        fut.cancel()
        layer.to_throw = exc
    finally:
        fut.remove_done_callback(wake)
        layer.waker = None
    if not fut.done() and layer.to_throw is None:
        layer.parked = fut          # woken by a post: the app itself still waits


async def _post(_Layer layer, message):
    """A send from another task while the driver takes the messages: queue it, wait for the answer."""
    fut = _asyncio.get_running_loop().create_future()
    if layer.pending is None:
        layer.pending = _deque()
    layer.pending.append((message, fut))
    waker = layer.waker
    if waker is not None and not waker.done():
        waker.set_result(None)
    await fut
