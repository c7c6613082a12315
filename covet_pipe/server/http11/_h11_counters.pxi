# What the server counts for its metrics: responses by status class, request durations in log2
# buckets, and the live connection sets (read at scrape time). Plain C integers: a request adds two
# clock reads and three increments. Included by _http11.pyx.

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from weakref import WeakSet as _WeakSet

cdef enum:
    #: request durations: bucket i counts those below 2**(i + REQ_SHIFT) ns (16.4 us, 32.8 us,
    #: ... 17.2 s); the last bucket counts the rest
    REQ_BUCKETS = 22
    REQ_SHIFT = 14

cdef extern from *:
    """
    static inline int covet_h11_bit_length(unsigned long long v) { return v ? 64 - __builtin_clzll(v) : 0; }
    """
    int _bit_length "covet_h11_bit_length" (unsigned long long v) noexcept nogil

#: responses started (the app's, and the server's own 400/408/413/414/431/505), by status class:
#: [0] other, [1] 1xx ... [5] 5xx
cdef long long _by_class[6]
#: complete responses by duration (from the parsed head to the last body byte handed to the transport)
cdef long long _durations[REQ_BUCKETS]
cdef long long _duration_ns = 0
cdef tuple _REQ_BOUNDS = tuple([2.0 ** (i + REQ_SHIFT) / 1e9 for i in range(REQ_BUCKETS - 1)]
                               + [float("inf")])
#: every Settings alive (one a server): their connection sets are the open connections
cdef object _servers = _WeakSet()


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline void _count_status(int status) noexcept:
    _by_class[status // 100 if 100 <= status <= 599 else 0] += 1


cdef inline void _count_duration(long long t0) noexcept:
    global _duration_ns
    cdef long long d = _now_ns() - t0
    cdef int b = _bit_length(<unsigned long long>d if d > 0 else 0) - REQ_SHIFT
    if b < 0:
        b = 0
    elif b >= REQ_BUCKETS:
        b = REQ_BUCKETS - 1
    _durations[b] += 1
    _duration_ns += d if d > 0 else 0


def server_counters():
    """This process's HTTP/1.1 counters since it started (every server in it together).

    ``responses``: ``{"1xx": n, ... "5xx": n}`` (a class with no response is 0) plus ``"other"``;
    ``duration_bounds`` (seconds, the last inf) and ``duration_counts`` (per bucket, not cumulative);
    ``duration_sum_s``; ``open_connections``: connections open now.
    """
    seen = set()
    cdef Py_ssize_t open_now = 0
    for s in list(_servers):
        conns = s.connections
        if conns is not None and id(conns) not in seen:
            seen.add(id(conns))
            open_now += len(conns)
    responses = {f"{c}xx": _by_class[c] for c in range(1, 6)}
    responses["other"] = _by_class[0]
    return {
        "responses": responses,
        "duration_bounds": _REQ_BOUNDS,
        "duration_counts": tuple([_durations[i] for i in range(REQ_BUCKETS)]),
        "duration_sum_s": _duration_ns / 1e9,
        "open_connections": open_now,
    }
