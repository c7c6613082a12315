# cython: language_level=3, boundscheck=False, wraparound=False
"""The floor for the per-layer figures: a bare Cython onion over the same no-op hooks.

No snapshot, no Request/Response objects, no error handling, no counters: request hooks in order,
the app, response hooks reversed at ``http.response.start``. ``BareSync`` calls sync hooks;
``BareAsync`` awaits the coroutines of ``async def`` hooks with a plain Cython ``await``
(DESIGN.md section 3: "within 1.25x of a bare Cython loop awaiting the same no-op coroutines").
Built on first import by pyximport (benchmarks/bench_layers.py).
"""


cdef class _SyncSend:
    cdef object send
    cdef tuple resp_hooks

    def __call__(self, message):
        cdef Py_ssize_t i
        if message["type"] == "http.response.start":
            for i in range(len(self.resp_hooks) - 1, -1, -1):
                self.resp_hooks[i](None, None)
        return self.send(message)


cdef class BareSync:
    cdef object app
    cdef tuple req_hooks
    cdef tuple resp_hooks

    def __init__(self, app, req_hooks, resp_hooks):
        self.app = app
        self.req_hooks = tuple(req_hooks)
        self.resp_hooks = tuple(resp_hooks)

    def __call__(self, scope, receive, send):
        cdef object h
        cdef _SyncSend sw
        if not self.req_hooks:
            return self.app(scope, receive, send)
        for h in self.req_hooks:
            h(None, None)
        sw = _SyncSend.__new__(_SyncSend)
        sw.send = send
        sw.resp_hooks = self.resp_hooks
        return self.app(scope, receive, sw)


async def _async_start(tuple resp_hooks, send, message):
    cdef Py_ssize_t i
    for i in range(len(resp_hooks) - 1, -1, -1):
        await resp_hooks[i](None, None)
    await send(message)


cdef class _AsyncSend:
    cdef object send
    cdef tuple resp_hooks

    def __call__(self, message):
        if message["type"] == "http.response.start":
            return _async_start(self.resp_hooks, self.send, message)
        return self.send(message)


async def _async_run(app, tuple req_hooks, tuple resp_hooks, scope, receive, send):
    cdef object h
    cdef _AsyncSend sw
    for h in req_hooks:
        await h(None, None)
    sw = _AsyncSend.__new__(_AsyncSend)
    sw.send = send
    sw.resp_hooks = resp_hooks
    await app(scope, receive, sw)


cdef class BareAsync:
    cdef object app
    cdef tuple req_hooks
    cdef tuple resp_hooks

    def __init__(self, app, req_hooks, resp_hooks):
        self.app = app
        self.req_hooks = tuple(req_hooks)
        self.resp_hooks = tuple(resp_hooks)

    def __call__(self, scope, receive, send):
        if not self.req_hooks:
            return self.app(scope, receive, send)
        return _async_run(self.app, self.req_hooks, self.resp_hooks, scope, receive, send)
