# Awaitables the core hands out without making a coroutine: one already finished, and the
# rest of a coroutine that was stepped once and waits. Included by _core.pyx; the RESP
# connection uses the same two (DONE, resume).


@cython.final
cdef class _Done:
    """An awaitable that is already complete (for sends the pipeline swallows)."""
    def __await__(self):
        return iter(())


cdef _Done _DONE = _Done()
#: an already finished awaitable: what a ``send`` that has nothing to wait on returns
DONE = _DONE


@cython.final
cdef class _Resume:
    """Await the rest of a coroutine that yielded when first stepped."""
    cdef object coro
    cdef object first

    def __await__(self):
        return _resume(self.coro, self.first)


def _resume(coro, first):
    # Hand the loop what the coroutine yielded, then drive it to its end.
    value = first
    while True:
        try:
            sent = yield value
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            try:
                value = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                value = coro.send(sent)
            except StopIteration as stop:
                return stop.value


cdef inline _Resume _resume_of(object coro, object first):
    cdef _Resume w = _Resume.__new__(_Resume)
    w.coro = coro
    w.first = first
    return w


def resume(coro, yielded):
    """The rest of *coro*, stepped once with ``send(None)`` and yielding *yielded*, as an awaitable.

    Awaiting it hands *yielded* to the event loop, then drives *coro* to its end and
    returns its result (what the loop throws in is thrown into *coro*).
    """
    return _resume_of(coro, yielded)
