# The connection's byte side: writes (a held head goes out with its body), flow control on
# writes, closing, and the one timer. Included by _http11.pyx; HttpConnection extends it.


cdef class _Wire:
    """Transport writes, the write-side flow control and the per-connection timer."""
    cdef public object transport
    cdef object loop
    cdef bint closed
    cdef bint read_paused
    cdef bint write_paused
    cdef object drain_waiter
    #: a response head waiting for its body (see hold), and the bound flush for call_soon
    cdef bytes pending
    cdef object flush_cb
    # one timer per connection; its kind and deadline change, the handle rarely does
    cdef object timer
    cdef int timer_kind
    cdef double deadline
    cdef double timer_at

    def pause_writing(self):
        self.write_paused = True

    def resume_writing(self):
        self.write_paused = False
        if self.drain_waiter is not None:
            if not self.drain_waiter.done():
                self.drain_waiter.set_result(None)
            self.drain_waiter = None

    cdef void hold(self, bytes head) except *:
        """Keep a response head until its body comes in the same step (one write, one syscall).

        If the app awaits something else first, the callback scheduled here sends it alone.
        """
        self.pending = head
        self.loop.call_soon(self.flush_cb)

    cdef void write(self, bytes data) except *:
        if self.closed:
            return
        if self.pending is not None:
            if PyBytes_GET_SIZE(data) <= COALESCE_MAX:
                data = self.pending + data
            else:
                self.transport.write(self.pending)
            self.pending = None
        self.transport.write(data)

    cdef void flush(self) except *:
        cdef bytes data = self.pending
        if data is not None:
            self.pending = None
            if not self.closed:
                self.transport.write(data)

    def _flush(self):
        self.flush()

    cdef object drain(self):
        if self.drain_waiter is None:
            self.drain_waiter = self.loop.create_future()
        return self.drain_waiter

    cdef void _close(self) except *:
        if not self.closed:
            self.flush()
            self.closed = True
            self.transport.close()
        self._arm(T_NONE, 0)

    cdef void _arm(self, int kind, double delay) except *:
        self.timer_kind = kind
        if kind == T_NONE:
            return
        self.deadline = self.loop.time() + delay
        if self.timer is not None and self.deadline < self.timer_at:
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _on_timer(self):
        cdef double now
        self.timer = None
        if self.timer_kind == T_NONE or self.closed:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer_at = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        self.timed_out(self.timer_kind)

    cdef void timed_out(self, int kind) except *:
        """The deadline of *kind* passed (subclasses decide what that means)."""
        self._close()
