# Chain snapshots: entries, segments, the swappable holder, the per-request context.
# Included by _core.pyx.

cdef frozenset _EMPTY_SET = frozenset()
cdef tuple _NO_SEGMENTS = ()


cdef enum:
    #: PluginStats.hook_hist: bucket i counts the sampled hook times below 2**(i + HOOK_SHIFT) ns
    #: (1.02 us, 2.05 us, ... 4.29 s); the last bucket counts the rest
    HOOK_BUCKETS = 24
    HOOK_SHIFT = 10


cdef extern from *:
    """
    static inline int covet_bit_length(unsigned long long v) { return v ? 64 - __builtin_clzll(v) : 0; }
    """
    int _bit_length "covet_bit_length" (unsigned long long v) noexcept nogil


cdef inline void _count_sample(PluginStats s, long long ns) noexcept:
    # One timed hook call (the sampled path only): its sum, its count, its log2 bucket.
    cdef int b = _bit_length(<unsigned long long>ns if ns > 0 else 0) - HOOK_SHIFT
    if b < 0:
        b = 0
    elif b >= HOOK_BUCKETS:
        b = HOOK_BUCKETS - 1
    s.sampled_ns += ns
    s.sampled_calls += 1
    s.hook_hist[b] += 1


cdef inline void _count_short(PluginStats s, int status) noexcept:
    # A hook answered the request itself: counted, and by the answer's status class.
    s.short_circuits += 1
    s.short_by_class[status // 100 if 100 <= status <= 599 else 0] += 1


cdef tuple _HOOK_BOUNDS = tuple([2.0 ** (i + HOOK_SHIFT) / 1e9 for i in range(HOOK_BUCKETS - 1)]
                                + [float("inf")])


cdef class PluginStats:
    """Per-plugin counters, kept in C and carried across snapshots."""

    def hook_histogram(self):
        """The sampled hook times: (upper bounds in seconds, the last inf; the count of each bucket).

        Counts are per bucket, not cumulative; their sum is ``sampled_calls``.
        """
        return _HOOK_BOUNDS, tuple([self.hook_hist[i] for i in range(HOOK_BUCKETS)])

    def short_circuits_by_class(self):
        """Short-circuits by the answer's status class: ``{"1xx": n, ... "5xx": n}`` (classes seen only)."""
        return {f"{c}xx": self.short_by_class[c] for c in range(1, 6) if self.short_by_class[c]}

    def hook_quantile_us(self, double q):
        """The *q* quantile of the sampled hook times in microseconds, interpolated in its log2 bucket
        (within a factor of 2 by construction), or None with no samples."""
        cdef long long total = 0, seen = 0
        cdef int i
        cdef double rank, lower, upper
        for i in range(HOOK_BUCKETS):
            total += self.hook_hist[i]
        if total == 0:
            return None
        rank = q * total
        for i in range(HOOK_BUCKETS):
            if self.hook_hist[i] and seen + self.hook_hist[i] >= rank:
                lower = 0.0 if i == 0 else 2.0 ** (i - 1 + HOOK_SHIFT)
                if i == HOOK_BUCKETS - 1:
                    return lower / 1000.0          # the open bucket: its lower bound
                upper = 2.0 ** (i + HOOK_SHIFT)
                return (lower + (upper - lower) * (rank - seen) / self.hook_hist[i]) / 1000.0
            seen += self.hook_hist[i]
        return None

    @staticmethod
    def merged(stats):
        """One PluginStats holding the sums of *stats* (an iterable of PluginStats): a plugin's totals
        over the protocols it runs under."""
        cdef PluginStats out = PluginStats()
        cdef PluginStats s
        cdef int i
        for s in stats:
            out.calls += s.calls
            out.errors += s.errors
            out.short_circuits += s.short_circuits
            out.skipped_open += s.skipped_open
            out.sampled_calls += s.sampled_calls
            out.sampled_ns += s.sampled_ns
            out.inflight += s.inflight
            for i in range(HOOK_BUCKETS):
                out.hook_hist[i] += s.hook_hist[i]
            for i in range(6):
                out.short_by_class[i] += s.short_by_class[i]
        return out

    def as_dict(self):
        return {
            "calls": self.calls,
            "errors": self.errors,
            "inflight": self.inflight,
            "short_circuits": self.short_circuits,
            "skipped_open": self.skipped_open,
            "avg_hook_us": (self.sampled_ns / self.sampled_calls / 1000.0)
            if self.sampled_calls else None,
            "p50_hook_us": self.hook_quantile_us(0.5),
            "p99_hook_us": self.hook_quantile_us(0.99),
        }


cdef class Entry:
    """One plugin as the core runs it; built by the registry, immutable after."""

    def __init__(self, plugin, *, str name, str version="0", int priority=1000,
                 str kind="middleware", str style="hook", protocols=("http",),
                 req_hook=None, resp_hook=None, bint req_async=False,
                 bint resp_async=False, bint fail_open=False, bint needs_body=False,
                 PluginStats stats=None, dict protocol_stats=None, paths=None):
        """*protocol_stats* (protocol -> PluginStats, filled in for protocols it lacks) gives each
        protocol the entry runs under counters of its own; *stats* instead shares one set among them
        all. With neither, each protocol gets fresh counters. *paths*: the route paths its hooks run
        for (a str ending in "/" matches that prefix, any other exactly); None: every path."""
        if style not in ("hook", "call_next"):
            raise ValueError(f"Entry style must be 'hook' or 'call_next', got {style!r}")
        self.plugin = plugin
        self.name = name
        self.version = version
        self.priority = priority
        self.kind = kind
        self.style = style
        self.protocols = frozenset(protocols)
        self.req_hook = req_hook
        self.resp_hook = resp_hook
        self.req_async = req_async
        self.resp_async = resp_async
        self.fail_open = fail_open
        self.needs_body = needs_body
        if paths is not None:
            paths = tuple(paths)
            for p in paths:
                if not isinstance(p, str) or not p.startswith("/"):
                    raise ValueError(f"Entry {name!r}: paths must be route paths starting with '/', got {p!r}")
            if style == "call_next":
                raise ValueError(f"Entry {name!r}: paths is for hook-style plugins")
        self.paths = paths
        if protocol_stats is None:
            protocol_stats = {}
        for p in sorted(self.protocols):
            if p not in protocol_stats:
                protocol_stats[p] = stats if stats is not None else PluginStats()
        self.protocol_stats = protocol_stats
        if self.protocols:
            self.stats = <PluginStats>protocol_stats[min(self.protocols)]
        else:
            self.stats = stats if stats is not None else PluginStats()

    cdef Entry _for_protocol(self, str protocol):
        # The entry as *protocol*'s segment runs it: itself, or a copy counting in that protocol's stats.
        cdef PluginStats s = <PluginStats>self.protocol_stats.get(protocol, self.stats)
        if s is self.stats:
            return self
        cdef Entry e = Entry.__new__(Entry)
        e.name, e.version, e.priority, e.kind, e.style = self.name, self.version, self.priority, self.kind, self.style
        e.plugin, e.protocols, e.protocol_stats, e.stats = self.plugin, self.protocols, self.protocol_stats, s
        e.req_hook, e.resp_hook, e.req_async, e.resp_async = self.req_hook, self.resp_hook, self.req_async, self.resp_async
        e.fail_open, e.needs_body, e.paths = self.fail_open, self.needs_body, self.paths
        e.c_request, e.c_response, e.c_done = self.c_request, self.c_response, self.c_done
        e.c_instance, e.c_keep = self.c_instance, self.c_keep
        return e

    @property
    def sort_key(self):
        return (self.priority, self.name)

    @property
    def native(self):
        """Whether the core calls this entry's hooks through C pointers."""
        return self.c_request != NULL or self.c_response != NULL or self.c_done != NULL

    def set_native(self, uintptr_t on_request, uintptr_t on_response, uintptr_t on_done,
                   uintptr_t instance, keep):
        """Give the entry a native plugin's hook addresses; *keep* holds its library loaded."""
        if keep is None:
            raise ValueError("set_native: keep must hold the loaded library")
        self.c_request = <covet_plugin_request_fn>on_request
        self.c_response = <covet_plugin_response_fn>on_response
        self.c_done = <covet_plugin_done_fn>on_done
        self.c_instance = <void *>instance
        self.c_keep = keep

    def __repr__(self):
        return f"<Entry {self.name} {self.version} priority={self.priority} style={self.style}>"


cdef class Segment:
    """A run of hook-style entries, optionally ended by a call_next-style one."""

    def __dealloc__(self):
        if self.slots != NULL:
            free(self.slots)
            self.slots = NULL

    @property
    def names(self):
        return tuple(e.name for e in self.hooks)


cdef Segment _new_segment(list hooks, Entry wrapper):
    cdef Segment s = Segment.__new__(Segment)
    cdef Entry e
    cdef Py_ssize_t i
    s.hooks = tuple(hooks)
    s.count = len(hooks)
    s.wrapper = wrapper
    s.slots = <NativeSlot *>calloc(s.count if s.count else 1, sizeof(NativeSlot))
    if s.slots == NULL:
        raise MemoryError()
    for i in range(s.count):
        e = <Entry>s.hooks[i]
        if e.c_request != NULL or e.c_response != NULL or e.c_done != NULL:
            s.slots[i].req = e.c_request
            s.slots[i].resp = e.c_response
            s.slots[i].done = e.c_done
            s.slots[i].instance = e.c_instance
            s.slots[i].calls = &e.stats.calls
            s.slots[i].native = True
    for e in hooks:
        if e.req_hook is not None and e.req_async:
            s.any_async_req = True
        if e.c_response != NULL:
            s.any_resp = True
        if e.c_done != NULL:
            s.any_native_done = True
        if e.resp_hook is not None:
            s.any_resp = True
            if e.resp_async:
                s.any_async_resp = True
        if e.needs_body:
            s.needs_body = True
    if wrapper is not None and wrapper.needs_body:
        s.needs_body = True
    return s


cdef tuple _segments(list entries, str protocol):
    # Invariant: hooks in (priority, name) order; a call_next entry closes a
    # segment and wraps everything after it (the rest of the chain and the app).
    cdef list out = []
    cdef list cur = []
    cdef Entry e
    cdef Segment s
    for e in entries:
        if protocol not in e.protocols:
            continue
        e = e._for_protocol(protocol)
        if e.style == "call_next":
            if protocol != "http" and protocol != "websocket":
                continue    # the registry refuses call_next plugins that list another protocol
            out.append(_new_segment(cur, e))
            cur = []
        else:
            cur.append(e)
    if cur or out:
        out.append(_new_segment(cur, None))
    if len(out) == 1:
        s = <Segment>out[0]
        s.simple = not s.any_async_req and not s.needs_body and s.wrapper is None
    return tuple(out)


cdef class Snapshot:
    """An immutable chain: what one request runs from its start to its end."""

    def __init__(self, entries=(), long generation=0):
        cdef list ordered = sorted(entries, key=lambda e: ((<Entry>e).priority, (<Entry>e).name))
        seen = set()
        for e in ordered:
            if not isinstance(e, Entry):
                raise TypeError(f"Snapshot entries must be Entry objects, got {type(e).__name__}")
            if (<Entry>e).name in seen:
                raise ValueError(f"two entries named {(<Entry>e).name!r} in one snapshot")
            seen.add((<Entry>e).name)
        self.entries = tuple(ordered)
        self.generation = generation
        self._by_protocol = {}
        protocols = set()
        for e in ordered:
            protocols.update((<Entry>e).protocols)
        for p in protocols:
            self._by_protocol[p] = _segments(ordered, p)
        self.http = self._by_protocol.get("http", _NO_SEGMENTS)
        self.ws = self._by_protocol.get("websocket", _NO_SEGMENTS)
        self.inflight = 0
        self.on_idle = None

    def segments(self, str protocol):
        """The segments that run for *protocol* (empty: nothing runs)."""
        return self._by_protocol.get(protocol, _NO_SEGMENTS)

    def may_suspend(self, str protocol="http"):
        """Whether a request of *protocol* may wait in its hooks (an async hook, a call_next
        wrapper, a body to read): protocols that step requests inline run those in a Task."""
        cdef Segment seg
        for seg in self._by_protocol.get(protocol, _NO_SEGMENTS):
            if seg.any_async_req or seg.any_async_resp or seg.wrapper is not None or seg.needs_body:
                return True
        return False

    def order(self, str protocol="http"):
        """Names in request-phase order for *protocol*."""
        return tuple(e.name for e in self.entries if protocol in (<Entry>e).protocols)

    def __repr__(self):
        return (f"<Snapshot gen={self.generation} entries={[e.name for e in self.entries]} "
                f"inflight={self.inflight}>")


cdef class Chain:
    """Holds the current snapshot; a swap is one reference assignment."""

    def __init__(self, services=None):
        self.current = Snapshot()
        self.ready = False
        self.services = services

    def swap(self, Snapshot snap):
        """Make *snap* current and return the snapshot it replaced."""
        old = self.current
        self.current = snap
        return old


@cython.freelist(64)
cdef class RequestContext:
    """What a hook gets beside the request: per-request state and services."""

    def __dealloc__(self):
        if self._heap != NULL:
            free(self._heap)
            self._heap = NULL

    @property
    def state(self):
        """This plugin's scratch space for this request (shared by its two hooks)."""
        if self._states is None:
            self._states = {}
        name = self._cur.name if self._cur is not None else ""
        d = self._states.get(name)
        if d is None:
            d = self._states[name] = {}
        return d

    @property
    def plugin_name(self):
        return self._cur.name if self._cur is not None else None

    def get_service(self, name):
        """A service by name (a plugin's ``service``, or one the host provided)."""
        if self._services is None:
            raise LookupError(f"no service {name!r}: this request runs without a plugin manager")
        return self._services.get_service(name)

    def __repr__(self):
        return f"<RequestContext {self.protocol} {self.request!r} plugin={self.plugin_name}>"


def make_request_context(Request request, str protocol="http", services=None):
    """A RequestContext for tests and protocol plugins that build requests themselves."""
    cdef RequestContext ctx = RequestContext.__new__(RequestContext)
    ctx.request = request
    ctx.protocol = protocol
    ctx._services = services
    return ctx


_make_context = make_request_context    # the former name (the sandbox helper calls it so)
