# How a response reaches the server: the app's send wrapped (the response phase at its start),
# and the responses the pipeline sends itself. Included by _core.pyx before _dispatch.pxi.


cdef Response _response_of(dict message, bint accept):
    cdef Response resp = Response.__new__(Response)
    if accept:
        resp._status = 101
    else:
        resp._status = message.get("status", 200)
    resp._orig_status = resp._status
    resp._raw_src = message.get("headers")
    resp.body = None
    return resp


cdef dict _with_changes(dict message, Response resp):
    message = dict(message)
    if message["type"] != "websocket.accept":
        message["status"] = resp._status
    if resp._headers is not None:
        message["headers"] = resp._headers._raw
    return message


cdef dict _bodiless_start(dict message, Response resp):
    # A response hook turned the app's response into one with no content (a 204 or a 304
    # on a 200): the start loses the fields that announce a body (a HEAD keeps them: its
    # status is the app's), and the app's body messages are dropped (_Send).
    message = _with_changes(message, resp)
    message["headers"] = _without_framing(message.get("headers"))
    message.pop("trailers", None)
    return message


async def _send_response(send, Response resp, RequestContext ctx):
    """Send a response the pipeline made (a short-circuit or an error)."""
    cdef object stream = resp._stream
    if ctx.protocol == "websocket":
        await _deny_websocket(send, resp, ctx)
        return
    start = {"type": "http.response.start", "status": resp._status, "headers": resp.asgi_headers()}
    resp._freeze(ctx._seg, ctx._ran)
    if stream is not None:
        if not _bodiless(resp._status) and ctx.request.method != "HEAD":
            await send(start)
            await _send_stream(send, stream, ctx, "http.response.body")
            return
        await _close_stream(stream)         # no content, or a HEAD: the stream is not read
    await send(start)
    await send({"type": "http.response.body",
                "body": b"" if _bodiless(resp._status) else resp.body or b"", "more_body": False})


async def _deny_websocket(send, Response resp, RequestContext ctx):
    # Refuse the handshake with the plugin's status where the server supports
    # it (the websocket.http.response extension), else with a close (403).
    ext = ctx.request.scope.get("extensions") or {}
    resp._freeze(ctx._seg, ctx._ran)
    if "websocket.http.response" in ext:
        await send({"type": "websocket.http.response.start", "status": resp._status,
                    "headers": resp.asgi_headers()})
        if resp._stream is not None:
            await _send_stream(send, resp._stream, ctx, "websocket.http.response.body")
            return
        await send({"type": "websocket.http.response.body", "body": resp.body or b"",
                    "more_body": False})
    else:
        if resp._stream is not None:
            await _close_stream(resp._stream)
        await send({"type": "websocket.close", "code": 1008,
                    "reason": _reason_phrase(resp._status)})


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


cdef enum:
    # Where a wrapped send is in the app's response.
    _S_WAIT = 0     # no http.response.start yet: messages before it pass (push, debug, ...)
    _S_PASS = 1     # the start went to the server: every message passes
    _S_DROP = 2     # the rest of the app's response goes nowhere (replaced, or no content)
    _S_EMPTY = 3    # a status with no content: the app's next body message ends it, empty


cdef dict _empty_end():
    return {"type": "http.response.body", "body": b"", "more_body": False}


@cython.final
@cython.freelist(64)
cdef class _Send:
    """The app's ``send``, wrapped: runs the response phase at the response start."""
    cdef void *vectorcall     # the vectorcall slot (PEP 590): apps call send(message) without a tuple
    cdef object send
    cdef Segment seg
    cdef RequestContext ctx
    cdef int state
    cdef bint hooks           # response hooks run at the start (some plugin that ran has one)

    def __call__(self, message):
        return self._call(message)

    cdef object _call(self, message):
        cdef Response resp, err
        cdef int state = self.state
        if state == _S_PASS:
            return self.send(message)
        if state == _S_DROP:
            return _DONE       # the app's body of a response we replaced
        if state == _S_EMPTY:
            if message["type"] == "http.response.body":
                self.state = _S_DROP
                return self.send(_empty_end())
            return _DONE
        t = message["type"]
        if t == "http.response.start" or t == "websocket.accept":
            self.state = _S_PASS
            if not self.hooks:
                return self.send(message)
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
    resp._freeze(sw.seg, sw.ctx._ran)
    if err is not None:
        sw.state = _S_DROP
        if message["type"] == "websocket.accept":
            return sw.send({"type": "websocket.close", "code": 1011})
        return _send_response(sw.send, err, sw.ctx)
    if resp._changed():
        if resp._status != resp._orig_status and _bodiless(resp._status) and \
                message["type"] == "http.response.start":
            sw.state = _S_EMPTY
            message = _bodiless_start(message, resp)
        else:
            message = _with_changes(message, resp)
    return sw.send(message)


cdef object _send_vectorcall(object self, PyObject **args, size_t nargsf, PyObject *kwnames):
    # PEP 590 signature: borrowed self and args, a new reference back, NULL (an exception) on error
    if (nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET) != 1 or kwnames != NULL:
        raise TypeError("send() takes exactly one positional argument (the ASGI message)")
    return (<_Send>self)._call(<object>args[0])


cdef _Send _new_send(object send, Segment seg, RequestContext ctx):
    # Every request that reaches the app gets one: without response hooks to run it still
    # says whether the response started (an app that raises before is answered: _dispatch.pxi).
    cdef _Send sw = _Send.__new__(_Send)
    sw.vectorcall = <void *>_send_vectorcall
    sw.send = send
    sw.seg = seg
    sw.ctx = ctx
    sw.hooks = seg.any_resp and ctx._ran != 0
    return sw


cdef void _enable_send_vectorcall():
    # Cython gives extension types tp_call only; give _Send the vectorcall slot as well
    # (tp_call stays, consistent with it), so `await send(message)` builds no argument tuple.
    cdef _Send probe = _Send.__new__(_Send)
    cdef PyTypeObject *t = <PyTypeObject *>_Send
    t.tp_vectorcall_offset = <Py_ssize_t>(<char *>&probe.vectorcall - <char *><PyObject *>probe)
    t.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL


_enable_send_vectorcall()
