# The C-level contract of the dispatch core: typed fields of every cdef class,
# for the core's own Cython modules to cimport. Python users see _core.pyi.

from covet_pipe.covet_plugin cimport (
    covet_header, covet_plugin_done_fn, covet_plugin_request_fn, covet_plugin_response_fn,
    covet_request_view,
)

cdef enum:
    ACT_CONTINUE = 0
    ACT_RESPOND = 1

cdef class Headers:
    #: list of (bytes name, bytes value) pairs, names lower-case; the ASGI form.
    cdef list _raw
    #: True once an edit made _raw differ from what the server/app gave us.
    cdef bint _dirty
    #: bumped by every edit (native views are rebuilt when it moves)
    cdef unsigned long _version
    #: None while editable; once what carries them went on (the response start to the server,
    #: the scope to the app): who got them, for the error an edit raises (see _started_error)
    cdef object _frozen
    cdef Py_ssize_t _frozen_ran
    cdef bint _frozen_req
    cdef list raw_list(self)
    @staticmethod
    cdef Headers wrap(object raw)
    cdef void _own(self)
    cdef int _freeze(self, object who, Py_ssize_t ran, bint request) except -1
    cdef int _refuse(self) except -1
    cdef Py_ssize_t _c_remove(self, bytes key) except -1
    cdef int _c_add(self, bytes key, bytes value) except -1
    cdef int _c_set(self, bytes key, bytes value) except -1


cdef class Request:
    cdef readonly dict scope
    cdef Headers _headers
    cdef object _body
    #: True when a plugin changed method, path or query string.
    cdef bint _dirty
    #: bumped by every edit of method, path or query string
    cdef unsigned long _version
    #: None while editable; who got it once the app has the scope (see Headers._frozen)
    cdef object _frozen
    cdef Py_ssize_t _frozen_ran
    cpdef dict build_scope(self)
    cdef void _own(self)
    cdef int _edit(self) except -1


cdef class Response:
    #: the ``status`` property's value (its setter checks it)
    cdef int _status
    cdef Headers _headers
    cdef list _raw_src
    cdef public object body
    cdef public object media_type
    cdef int _orig_status
    #: None while editable; once its start went to the server, who got it (see Headers._frozen)
    cdef object _frozen
    cdef Py_ssize_t _frozen_ran
    #: a streamed body: an async iterator or a sync iterable of bytes (body is then None)
    cdef object _stream
    #: body transforms, (fn, Entry or None) pairs in the order they apply: a list while hooks
    #: may add to it, a tuple once the body flows; None: none
    cdef object _transforms
    #: the context of the response phase working on it (transform_body reads which plugin's
    #: hook runs); dropped when it is frozen
    cdef RequestContext _ctx
    cdef bint _changed(self)
    cdef list asgi_headers(self)
    cdef list _start_headers(self, Py_ssize_t length)
    cdef int _freeze(self, object who, Py_ssize_t ran) except -1


cdef class _Action:
    cdef readonly int kind
    cdef readonly Response response


cdef class PluginStats:
    cdef public long long calls
    cdef public long long errors
    cdef public long long short_circuits
    cdef public long long skipped_open
    cdef public long long sampled_calls
    cdef public long long sampled_ns
    #: sampled hook times in log2 buckets (HOOK_BUCKETS in _phases.pxi): bucket i holds the samples
    #: shorter than 2**(i + 10) ns (~1 us, 2 us, ... 4.3 s), the last one the rest
    cdef long long hook_hist[24]
    #: short-circuits by the answer's status class: [0] other, [1] 1xx ... [5] 5xx
    cdef long long short_by_class[6]
    #: requests waiting in this plugin now: in an async hook that suspended, or inside a call_next layer
    cdef public long long inflight


cdef class Entry:
    cdef readonly str name
    cdef readonly str version
    cdef readonly int priority
    cdef readonly str kind
    cdef readonly str style
    cdef readonly object plugin
    cdef readonly frozenset protocols
    #: the counters of the protocol this entry runs under (each protocol's segment gets its own view)
    cdef readonly PluginStats stats
    #: protocol -> its counters, shared by the entry's per-protocol views (and kept across reloads)
    cdef readonly dict protocol_stats
    cdef readonly object req_hook
    cdef readonly object resp_hook
    cdef bint req_async
    cdef bint resp_async
    cdef readonly bint fail_open
    cdef readonly bint needs_body
    #: the route paths its hooks run for (a str ending in "/": that prefix; else exactly); None: every path
    cdef readonly tuple paths
    # A native plugin's hooks: C function pointers called directly (no cffi per request).
    cdef covet_plugin_request_fn c_request
    cdef covet_plugin_response_fn c_response
    cdef covet_plugin_done_fn c_done
    cdef void *c_instance
    #: keeps the native library (and its cffi handle) loaded while this entry exists
    cdef object c_keep
    cdef Entry _for_protocol(self, str protocol)


cdef struct NativeSlot:
    # One entry's native hooks, in a C array beside the segment's entries (NULL: Python).
    covet_plugin_request_fn req
    covet_plugin_response_fn resp
    covet_plugin_done_fn done
    void *instance
    long long *calls
    bint native


cdef class Segment:
    #: hook-style entries run inline, in (priority, name) order
    cdef tuple hooks
    cdef Py_ssize_t count
    cdef bint any_async_req
    cdef bint any_resp
    cdef bint any_async_resp
    cdef bint needs_body
    #: some entry is native and has an on_request_done hook
    cdef bint any_native_done
    #: count slots, one per entry: the native hooks the loops call without touching Python objects
    cdef NativeSlot *slots
    #: a call_next-style entry that wraps the rest of the chain, or None
    cdef Entry wrapper
    #: the only segment, all request hooks sync, no body to read: no coroutine of ours runs
    cdef bint simple


cdef class Snapshot:
    cdef readonly tuple entries
    cdef readonly long generation
    cdef dict _by_protocol
    cdef tuple http
    cdef tuple ws
    cdef public long inflight
    cdef public object on_idle


cdef class Chain:
    cdef public Snapshot current
    cdef public bint ready
    cdef public object services


cdef class RequestContext:
    cdef readonly Request request
    cdef readonly str protocol
    cdef object _services
    cdef Entry _cur
    cdef dict _states
    #: the response phase unwinds the hooks of the first _ran entries
    cdef Py_ssize_t _ran
    #: how many entries the request phase reached (on_request_done runs for the native ones)
    cdef Py_ssize_t _reached
    #: names of fail-open plugins that failed in this request (or None)
    cdef set _skipped
    # Native plugins: the view handed to their hooks, built once and rebuilt after edits.
    cdef covet_request_view _view
    cdef covet_header _inline[16]
    cdef covet_header *_heap
    cdef Py_ssize_t _heap_cap
    #: the edit versions the view was built at (-1: not built)
    cdef long _view_ver
    #: the objects whose bytes the view points into, kept alive for the request
    cdef object _view_keep
    cdef object _keep_more
    #: 0 request phase, 1 response phase
    cdef int _phase
    #: the response the response phase works on (native host functions edit it)
    cdef Response _resp
    #: what a native plugin answered with respond()
    cdef Response _native_answer
    #: per-plugin request_data pointers, by entry index
    cdef dict _data
    #: the segment and entry index a native hook runs for (host functions use them)
    cdef Segment _seg
    cdef Py_ssize_t _cur_i
    #: a host function edited the request or response: rebuild the view before the next hook
    cdef bint _host_edited
    #: this request's hook calls are timed (one request in SAMPLE_MASK + 1)
    cdef bint _sample
    #: an async hook that really waits (a _Suspension): the loop stopped at it, and its
    #: phase's async driver awaits it; None while the loop runs or when it ran to its end
    cdef object _pending
    #: the request's receive, when the pipeline answers itself and may stream a body (it
    #: watches for the client's http.disconnect meanwhile); else None
    cdef object _receive
