# The call_next style, the plugin's side (included in _core.pyx after _callnext_app.pxi):
# call_next itself, the StreamedResponse it returns, and that response's body_iterator.

cdef enum:
    PULL_CALL_NEXT = 0      # call_next(request): until the app's response start
    PULL_BODY = 1           # one step of body_iterator: until the app's next body chunk


cdef class StreamedResponse(Response):
    """What ``call_next`` returns: the app's status and headers, editable; the body streams later.

    Edit ``status`` and ``headers`` and return it: the body then goes from the app to the client
    as it comes. Reading ``body_iterator`` takes the body: then return a new Response built
    from what you read (its body may be an async iterator over it).
    """
    cdef _Layer _layer
    cdef object _start          # the app's http.response.start message
    cdef bint _consumed         # body_iterator was read
    cdef bint _empty            # the app returned without a response: a stand-in 500

    @property
    def body_iterator(self):
        """The app's body, chunk by chunk (bytes), as the app sends it."""
        cdef _BodyIter it = _BodyIter.__new__(_BodyIter)
        it.resp = self
        return it

    cdef Response _fallback(self):
        # What the client gets when the app sent no response and the plugin returned this one.
        if self.status == 500 and not (self._headers is not None and self._headers._dirty):
            return _error_response(500)
        return Response(self.status, self.headers, b"")


cdef StreamedResponse _streamed(_Layer layer, dict message, str t):
    # The response call_next returns for the app's start *message* of type *t* (None: it sent none).
    cdef StreamedResponse sr = StreamedResponse.__new__(StreamedResponse)
    cdef object headers
    cdef bint empty = message is None
    if empty:
        sr.status = 500
        sr._raw_src = None
    else:
        if t == "websocket.accept":
            sr.status = 101
        elif t == "websocket.close":        # the app refused the handshake
            sr.status = 403
        else:
            sr.status = message.get("status", 200)
        headers = message.get("headers")
        sr._raw_src = headers if type(headers) is list else (list(headers) if headers is not None else None)
    sr._orig_status = sr.status
    sr.body = None
    sr._layer = layer
    sr._start = message
    sr._empty = empty
    layer.resp = sr
    return sr


cdef object _start_message(_Layer layer, StreamedResponse sr):
    # The start the server gets: the app's own message unless the plugin changed it; a status
    # with no content (RFC 9110 §15.3.5, §15.4.5) goes without framing fields or trailers.
    cdef bint bodiless = not layer.ws and _bodiless(sr._status)
    layer.next_mode = CN_NOBODY if bodiless else CN_DIRECT
    if bodiless:
        return _bodiless_start(sr._start, sr)
    if not sr._changed():
        return sr._start
    return _with_changes(sr._start, sr)


@cython.final
cdef class _BodyIter:
    """StreamedResponse.body_iterator: each __anext__ drives the app to its next body chunk."""
    cdef StreamedResponse resp

    def __aiter__(self):
        return self

    def __anext__(self):
        cdef _Pull p = _Pull.__new__(_Pull)
        self.resp._consumed = True
        p._layer = self.resp._layer
        p._kind = PULL_BODY
        return p


@cython.final
cdef class _Pull:
    """``call_next`` (called once, then awaited), or one step of a body_iterator."""
    cdef void *vectorcall       # PEP 590: call_next(request) without an argument tuple
    cdef _Layer _layer
    cdef int _kind
    cdef int _stage             # 0 new, 1 running, 2 over
    cdef bint _called
    cdef object _request
    cdef object _sub            # a message before the response start, on its way to the server
    cdef object _result

    def __call__(self, request=None):
        return self._call(request)

    cdef object _call(self, object request):
        if self._kind != PULL_CALL_NEXT:
            raise TypeError("not callable")
        if self._called:
            raise RuntimeError(f"plugin {self._layer.entry.name!r} called call_next() twice in "
                               "process_request; call it once per request")
        self._called = True
        self._request = request
        return self

    def __await__(self):
        return self

    def send(self, value):
        cdef PyObject *out = NULL
        return _sent(self._step(value, None, &out), out)

    def throw(self, typ, val=None, tb=None):
        cdef PyObject *out = NULL
        return _sent(self._step(None, _exception_of(typ, val, tb), &out), out)

    def close(self):
        if self._sub is not None and hasattr(self._sub, "close"):
            self._sub.close()
        self._sub = None
        self._over()

    def __repr__(self):
        return f"<call_next of plugin {self._layer.entry.name!r}>"

    cdef void _over(self):
        self._stage = 2
        if self._layer.puller is self:
            self._layer.puller = None

    cdef int _step(self, object value, object exc, PyObject **out) except -1:
        cdef _Layer layer = self._layer
        cdef int r
        if self._stage != 1:
            if self._stage == 2:
                if self._kind == PULL_BODY:
                    raise StopAsyncIteration
                Py_INCREF(self._result)
                out[0] = <PyObject *>self._result
                return 0
            if layer.puller is not None:
                raise RuntimeError(f"plugin {layer.entry.name!r}: call_next() or body_iterator is already "
                                   "running (in another task?) in process_request; await one at a time")
            if exc is not None:
                self._stage = 2
                raise exc
            self._stage = 1
            if self._kind == PULL_CALL_NEXT:
                self._called = True
                _start_app(layer, self._request)
            elif layer.body_done or layer.app is None:
                self._stage = 2
                raise StopAsyncIteration
            elif layer.ws and layer.resp is not None and layer.resp.status == 101:
                self._stage = 2
                raise RuntimeError(f"plugin {layer.entry.name!r}: an accepted websocket handshake has no "
                                   "body_iterator to read; return the response (or a Response to refuse it)")
        layer.puller = self
        try:
            r = self._drive(layer, value, exc, out)
        except BaseException:
            self._over()
            raise
        if r == 0:
            self._over()
        return r

    cdef int _drive(self, _Layer layer, object value, object exc, PyObject **out) except -1:
        cdef int r, k
        cdef object message
        cdef str t
        while True:
            if self._sub is not None:
                try:
                    r = _advance(self._sub, value, exc, out)
                except BaseException as failure:
                    self._sub = None
                    value = None
                    exc = failure       # the answer to the message: its send failed
                else:
                    if r == 1:
                        return 1
                    Py_DECREF(<object>out[0])
                    out[0] = NULL
                    self._sub = None
                    value = exc = None
            k = _pull(layer, value, exc, out)
            value = exc = None
            if k == PULL_YIELD:
                return 1
            if k == PULL_DONE:
                if self._kind == PULL_BODY:
                    raise StopAsyncIteration
                if not layer.saw_disconnect:
                    _log.warning("plugin %r %s: the app returned without sending a response; "
                                 "the client gets a 500", layer.entry.name, layer.entry.version)
                return self._done(_streamed(layer, None, None), out)
            message = layer.message
            if type(message) is not dict:
                raise TypeError(f"the app sent {type(message).__name__} {message!r}; ASGI messages are dicts")
            t = (<dict>message).get("type")
            if self._kind == PULL_CALL_NEXT:
                if _eq(t, "http.response.start") or (layer.ws and (
                        t == "websocket.accept" or t == "websocket.close" or t == "websocket.http.response.start")):
                    return self._done(_streamed(layer, <dict>message, t), out)
                # before the start (http.response.push, http.response.debug, any extension's):
                # to the server as it is, in order
                self._sub = _await_iter(layer.srv_send(message))
                continue
            if _eq(t, "http.response.body") or t == "websocket.http.response.body":
                chunk = (<dict>message).get("body", b"")
                if not (<dict>message).get("more_body", False):
                    layer.body_done = True
                    if not chunk:
                        raise StopAsyncIteration
                if chunk:
                    return self._done(chunk, out)
            # other messages of a body that is read (trailers ...) go nowhere

    cdef int _done(self, object result, PyObject **out) except -1:
        self._result = result
        Py_INCREF(result)
        out[0] = <PyObject *>result
        return 0


cdef object _call_next_vectorcall(object self, PyObject **args, size_t nargsf, PyObject *kwnames):
    cdef Py_ssize_t n = nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET
    if kwnames == NULL:
        if n == 1:
            return (<_Pull>self)._call(<object>args[0])
        if n == 0:
            return (<_Pull>self)._call(None)
    elif n == 0 and len(<tuple>kwnames) == 1 and (<tuple>kwnames)[0] == "request":
        return (<_Pull>self)._call(<object>args[0])
    raise TypeError("call_next() takes one argument, the request")


cdef void _enable_call_next_vectorcall():
    cdef _Pull probe = _Pull.__new__(_Pull)
    cdef PyTypeObject *t = <PyTypeObject *>_Pull
    t.tp_vectorcall_offset = <Py_ssize_t>(<char *>&probe.vectorcall - <char *><PyObject *>probe)
    t.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL


_enable_call_next_vectorcall()


cdef int _pull_step(PyObject *op, PyObject *arg, PyObject **out) except -1:
    out[0] = NULL
    return (<_Pull>op)._step(<object>arg, None, out)


covet_cn_install(_Pull, _pull_step)

