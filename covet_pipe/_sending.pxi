# How a response reaches the server: the app's send wrapped (the response phase at its start),
# and the responses the pipeline sends itself. Included by _core.pyx before _dispatch.pxi.


cdef Response _response_of(dict message, bint accept, RequestContext ctx):
    cdef Response resp = Response.__new__(Response)
    resp._ctx = ctx
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
    """Send a response the pipeline made (a short-circuit or an error), with its transforms."""
    cdef bint empty = _bodiless(resp._status) or ctx.request.method == "HEAD"
    if ctx.protocol == "websocket":
        await _deny_websocket(send, resp, ctx)
        return
    if resp._transforms is not None:
        resp._transforms = tuple(resp._transforms)
    if empty:
        # no content, or a HEAD: no body is sent, so no transform runs and no stream is read
        if resp._stream is not None:
            await _close_stream(resp._stream)
        await _send_start(send, resp, ctx, "http.response.",
                          -1 if resp._transforms is not None or resp._stream is not None else
                          len(resp.body) if resp.body is not None else 0)
        await send(_empty_end())
        return
    if resp._stream is not None:
        await _send_stream(send, resp._stream, resp, ctx, "http.response.")
        return
    body = resp.body if resp.body is not None else b""
    if resp._transforms is not None:
        try:
            body = await _transformed(resp, ctx, body, True)
        except _TransformFailed as failure:
            await _transform_failed(send, failure, ctx, True)
            return
    await _send_start(send, resp, ctx, "http.response.", len(body))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _deny_websocket(send, Response resp, RequestContext ctx):
    # Refuse the handshake with the plugin's status where the server supports
    # it (the websocket.http.response extension), else with a close (403).
    ext = ctx.request.scope.get("extensions") or {}
    if "websocket.http.response" in ext:
        if resp._stream is not None:
            resp._transforms = None         # (a handshake's refusal is not transformed)
            await _send_stream(send, resp._stream, resp, ctx, "websocket.http.response.")
            return
        await _send_start(send, resp, ctx, "websocket.http.response.",
                          len(resp.body) if resp.body is not None else 0)
        await send({"type": "websocket.http.response.body", "body": resp.body or b"",
                    "more_body": False})
    else:
        resp._freeze(ctx._seg, ctx._ran)
        if resp._stream is not None:
            await _close_stream(resp._stream)
        await send({"type": "websocket.close", "code": 1008,
                    "reason": _reason_phrase(resp._status)})


async def _answer(Segment seg, RequestContext ctx, Response resp, send):
    """A request hook answered: run the response phase for those that ran, then send."""
    cdef Response err
    resp._ctx = ctx
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
    _S_XFORM = 4    # body transforms: the app's messages go through _Send._through


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
    cdef Response resp        # with body transforms: the response they work for
    cdef dict held            # with body transforms: the app's start, until the first chunk passed

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
        if state == _S_XFORM:
            return self._through(message)
        t = message["type"]
        if t == "http.response.start" or t == "websocket.accept":
            self.state = _S_PASS
            if not self.hooks:
                return self.send(message)
            resp = _response_of(message, t == "websocket.accept", self.ctx)
            err = _resp_phase(self.seg, self.ctx, resp)
            if self.ctx._pending is not None:
                return self._start_async(message, resp)
            return _started(self, message, resp, err)
        return self.send(message)

    async def _start_async(self, dict message, Response resp):
        # A response hook suspended: the rest of the phase, then the start as above.
        cdef Response err = await _resp_phase_async(self.seg, self.ctx)
        await _started(self, message, resp, err)

    async def _through(self, dict message):
        # The app's messages after its start, with body transforms set.
        t = message["type"]
        if t == "http.response.body":
            await self._chunk(message.get("body", b""), not message.get("more_body", False))
        elif t == "http.response.pathsend":
            # a body by reference, which the transforms must see too: read it
            async for chunk in _file_chunks(message["path"]):
                await self._chunk(chunk, False)
                if self.state != _S_XFORM:
                    return
            await self._chunk(b"", True)
        else:                           # trailers, an extension's message
            if self.held is not None:
                await self._release_start(-1)
            await self.send(message)

    async def _chunk(self, chunk, bint last):
        chunk = bytes(chunk)
        try:
            out = await _transformed(self.resp, self.ctx, chunk, last)
        except _TransformFailed as failure:
            self.state = _S_DROP        # what the app still sends goes nowhere
            started = self.held is None
            self.held = None
            await _transform_failed(self.send, failure, self.ctx, not started)
            return
        if self.held is not None:
            # the whole body in one message: its length is known (unless trailers follow), and
            # if the transforms handed it back as it was, the app's own framing stands
            await self._release_start(-1 if not last or self.held.get("trailers") else
                                      -2 if out is chunk else len(out))
        if out or last:
            await self.send({"type": "http.response.body", "body": out, "more_body": not last})
        if last:
            self.state = _S_PASS        # (trailers may follow)

    async def _release_start(self, Py_ssize_t length):
        # The start the app sent, as the hooks and the transforms' first call left it; length:
        # the body's (>= 0), not known (-1), or the app's own Content-Length, if any (-2).
        message = _with_changes(self.held, self.resp)
        self.held = None
        if length != -2:
            raw = [item for item in (message.get("headers") or ())
                   if not _name_is(item[0], b"content-length")]
            if length >= 0:
                raw.append((b"content-length", str(length).encode("ascii")))
            message["headers"] = raw
        self.resp._freeze(self.seg, self.ctx._ran)
        await self.send(message)


cdef inline object _started(_Send sw, dict message, Response resp, Response err):
    # After the response phase: the response that replaces the app's, or its edited start.
    if err is not None:
        resp._freeze(sw.seg, sw.ctx._ran)
        sw.state = _S_DROP
        if message["type"] == "websocket.accept":
            return sw.send({"type": "websocket.close", "code": 1011})
        return _send_response(sw.send, err, sw.ctx)
    if resp._transforms is not None and message["type"] == "http.response.start" and \
            not _bodiless(resp._status):
        resp._transforms = tuple(resp._transforms)
        if sw.ctx.request.method != "HEAD":
            sw.resp = resp
            sw.held = message           # sent once the first chunk has been through them
            sw.state = _S_XFORM
            return _DONE
        # a HEAD has no body to transform, and the length they would make is not known
        message = _with_changes(message, resp)
        message["headers"] = [item for item in (message.get("headers") or ())
                              if not _name_is(item[0], b"content-length")]
        resp._freeze(sw.seg, sw.ctx._ran)
        return sw.send(message)
    resp._freeze(sw.seg, sw.ctx._ran)
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
