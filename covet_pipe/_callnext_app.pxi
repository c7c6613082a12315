# The call_next style, the app's side (included in _core.pyx after _callnext.pxi): the send and
# receive the downstream app gets, and the stepping helpers every call_next awaitable shares.
#
# Inside a step of the driver, the app's `await send(message)` yields _HANDOFF, which only the
# driver ever sees (_pull, _callnext_drive.pxi), with the message on the layer: no future, no task.
# A send from another task (a response streaming from a task group) posts the message and waits
# until the driver answered it (_post): order and backpressure as with one task. Once the plugin returned
# the app's response, send is the server's own send (CN_DIRECT), one test per message.


@cython.final
cdef class _Handoff:
    """What the app's send yields to the call_next driver (it never reaches the event loop)."""

    def __repr__(self):
        return "<covet-pipe call_next handoff: awaited outside the driver that owns it>"


cdef _Handoff _HANDOFF = _Handoff()


cdef inline object _sent(int r, PyObject *out):
    # The Python face of a step: the yielded value, or StopIteration(returned value).
    cdef object v = _take(out)
    if r == 1:
        return v
    raise StopIteration(v)


cdef object _exception_of(object typ, object val, object tb):
    # throw()'s arguments (the old three-argument form too) as one exception
    if val is None:
        exc = typ() if isinstance(typ, type) else typ
    elif isinstance(val, BaseException):
        exc = val
    else:
        exc = typ(val)
    if tb is not None:
        exc = exc.with_traceback(tb)
    return exc


cdef int _advance(object it, object value, object exc, PyObject **out) except -1:
    # Step *it*: send *value*, or throw *exc* in. 1: it yielded *out; 0: it returned *out (both
    # new references); raises what it raised.
    if exc is None:
        return PyIter_Send(it, value, out)
    throw = getattr(it, "throw", None)
    if throw is None:
        raise exc
    try:
        y = throw(exc)
    except StopIteration as stop:
        y = stop.value
        Py_INCREF(y)
        out[0] = <PyObject *>y
        return 0
    Py_INCREF(y)
    out[0] = <PyObject *>y
    return 1


cdef object _CyCoroType         # Cython's coroutine type (set below, from one of ours)
cdef object _PyCoroType = _types.CoroutineType


cdef object _await_iter(object aw):
    # The iterator that awaiting *aw* steps: a coroutine, or one of ours, is its own.
    cdef object t = type(aw)
    if t is _CyCoroType or t is _PyCoroType or t is _SendAwait or t is _Layer or t is _Recv:
        return aw
    return aw.__await__()


cdef void _coroutine_types():
    global _CyCoroType
    c = _ready(None)
    _CyCoroType = type(c)
    c.close()


_coroutine_types()


cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object s)
    int PyUnicode_KIND(object s)
    void *PyUnicode_DATA(object s)


cdef inline bint _eq(str a, str b) noexcept:
    # a == b for two str: the same object first, then lengths, then the bytes (both kinds alike)
    cdef Py_ssize_t n
    if a is b:
        return True
    if a is None or b is None:
        return False
    n = PyUnicode_GET_LENGTH(a)
    return (n == PyUnicode_GET_LENGTH(b) and PyUnicode_KIND(a) == PyUnicode_KIND(b)
            and memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), n * PyUnicode_KIND(a)) == 0)


cdef object _nobody(_Layer layer, object message):
    # CN_NOBODY: a response whose status has no body (204, 304, 1xx): its body and trailers are
    # dropped, the end of the body still goes out (so the server knows the response is complete).
    t = message.get("type")
    if t == "http.response.body":
        if message.get("more_body", False):
            return _DONE
        return layer.srv_send({"type": "http.response.body", "body": b"", "more_body": False})
    if t == "http.response.trailers":
        return _DONE
    return layer.srv_send(message)


cdef object _send_now(_Layer layer, object message):
    # A send of the app's that does not hand its message to the driver.
    cdef int mode = layer.mode
    if mode == CN_DIRECT:
        return layer.srv_send(message)
    if mode == CN_CAPTURE:
        return _post(layer, message)
    if mode == CN_NOBODY:
        return _nobody(layer, message)
    return _DONE


@cython.final
@cython.freelist(16)
cdef class _SendAwait:
    """What the app's send returns while the driver takes its messages."""
    cdef _Layer layer
    cdef object message
    cdef object sub         # the send it became (another task's, or the mode changed)
    cdef int stage          # 0 new, 1 handed over, 2 sending through sub, 3 done

    def __await__(self):
        return self

    def send(self, value):
        cdef PyObject *out = NULL
        return _sent(self._step(value, None, &out), out)

    def throw(self, typ, val=None, tb=None):
        cdef PyObject *out = NULL
        return _sent(self._step(None, _exception_of(typ, val, tb), &out), out)

    def close(self):
        if self.stage == 2 and hasattr(self.sub, "close"):
            self.sub.close()
        self.stage = 3

    cdef int _step(self, object value, object exc, PyObject **out) except -1:
        cdef int r
        if self.stage == 0:
            if self.layer.driving and self.layer.mode == CN_CAPTURE:
                self.layer.message = self.message
                self.message = None
                self.stage = 1
                if exc is not None:
                    raise exc
                Py_INCREF(_HANDOFF)
                out[0] = <PyObject *>_HANDOFF
                return 1
            self.sub = _await_iter(_send_now(self.layer, self.message))
            self.message = None
            self.stage = 2
        if self.stage == 2:
            r = _advance(self.sub, value, exc, out)
            if r == 0:
                self.stage = 3
                self.sub = None
            return r
        # 1: the driver answered (None, or the server's send failed: *exc*); 3: over
        self.stage = 3
        if exc is not None:
            raise exc
        Py_INCREF(None)
        out[0] = <PyObject *>None
        return 0


cdef int _sendawait_step(PyObject *op, PyObject *arg, PyObject **out) except -1:
    out[0] = NULL
    return (<_SendAwait>op)._step(<object>arg, None, out)


covet_cn_install(_SendAwait, _sendawait_step)


@cython.final
@cython.freelist(16)
cdef class _AppSend:
    """The downstream app's send in a call_next layer."""
    cdef void *vectorcall     # the vectorcall slot (PEP 590): send(message) without an argument tuple
    cdef _Layer layer

    def __call__(self, message):
        return _app_send(self.layer, message)


cdef object _app_send(_Layer layer, object message):
    cdef int mode = layer.mode
    cdef _SendAwait w
    if mode == CN_DIRECT:
        return layer.srv_send(message)
    if mode == CN_CAPTURE:
        w = _SendAwait.__new__(_SendAwait)
        w.layer = layer
        w.message = message
        return w
    if mode == CN_NOBODY:
        return _nobody(layer, message)
    return _DONE


cdef object _app_send_vectorcall(object self, PyObject **args, size_t nargsf, PyObject *kwnames):
    if (nargsf & ~PY_VECTORCALL_ARGUMENTS_OFFSET) != 1 or kwnames != NULL:
        raise TypeError("send() takes exactly one positional argument (the ASGI message)")
    return _app_send((<_AppSend>self).layer, <object>args[0])


cdef _AppSend _new_app_send(_Layer layer):
    cdef _AppSend s = _AppSend.__new__(_AppSend)
    s.vectorcall = <void *>_app_send_vectorcall
    s.layer = layer
    return s


cdef void _enable_app_send_vectorcall():
    cdef _AppSend probe = _AppSend.__new__(_AppSend)
    cdef PyTypeObject *t = <PyTypeObject *>_AppSend
    t.tp_vectorcall_offset = <Py_ssize_t>(<char *>&probe.vectorcall - <char *><PyObject *>probe)
    t.tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL


_enable_app_send_vectorcall()


@cython.final
@cython.freelist(16)
cdef class _AppReceive:
    """The downstream app's receive in a call_next layer: what the plugin read first, then the server's."""
    cdef _Layer layer

    def __call__(self):
        cdef _Layer layer = self.layer
        cdef _Recv r
        if layer.replay:
            return _ready(layer.replay.pop(0))
        if layer.mode == CN_DROP:
            return _ready(_gone_message(layer.req.scope))
        r = _Recv.__new__(_Recv)
        r.layer = layer
        r.it = _await_iter(layer.srv_receive())
        return r


cdef _AppReceive _new_app_receive(_Layer layer):
    cdef _AppReceive r = _AppReceive.__new__(_AppReceive)
    r.layer = layer
    return r


cdef dict _gone_message(dict scope):
    # What receive says once the app's response was dropped: the client is gone, for the app.
    if scope.get("type") == "websocket":
        return {"type": "websocket.disconnect", "code": 1006}
    return {"type": "http.disconnect"}


@cython.final
@cython.freelist(16)
cdef class _Recv:
    """One receive of the server's, noting when it says the client left."""
    cdef _Layer layer
    cdef object it

    def __await__(self):
        return self

    def send(self, value):
        cdef PyObject *out = NULL
        return _sent(self._step(value, None, &out), out)

    def throw(self, typ, val=None, tb=None):
        cdef PyObject *out = NULL
        return _sent(self._step(None, _exception_of(typ, val, tb), &out), out)

    def close(self):
        if hasattr(self.it, "close"):
            self.it.close()

    cdef int _step(self, object value, object exc, PyObject **out) except -1:
        cdef int r = _advance(self.it, value, exc, out)
        cdef object message
        if r == 0:
            message = <object>out[0]
            if type(message) is dict and (<dict>message).get("type") in ("http.disconnect", "websocket.disconnect"):
                self.layer.saw_disconnect = True
        return r


cdef int _recv_step(PyObject *op, PyObject *arg, PyObject **out) except -1:
    out[0] = NULL
    return (<_Recv>op)._step(<object>arg, None, out)


covet_cn_install(_Recv, _recv_step)
