# cython: language_level=3
"""path_counter: a covet-pipe Cython plugin that counts requests per path.

Every response gets ``x-path-count: <n>``, the number of requests seen so far for its path
(this one included). Build: ``covet-pipe build path_counter.pyx`` (-> path_counter.so).
"""

from cpython.pycapsule cimport PyCapsule_New
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdio cimport snprintf
from libc.stdlib cimport free, malloc
from libc.string cimport strlen

from covet_pipe.covet_plugin cimport *

cdef enum:
    # New paths stop being counted past this many: a client that sends random paths must not
    # grow the table without limit. Requests to untracked paths get no header.
    MAX_PATHS = 10000


cdef class _State:
    """Per-plugin state. A Python object, since every hook runs with the GIL held."""
    cdef const covet_host_api *host
    cdef covet_plugin_host_ptr plugin
    cdef dict counts   # path (bytes) -> requests seen


cdef struct _RequestCount:
    # per-request data: on_request counts, on_response reports what was counted
    unsigned long long n


cdef inline covet_plugin_str _str(const char *s) noexcept:
    cdef covet_plugin_str out
    out.ptr = s
    out.len = strlen(s)
    return out


cdef int _init(const covet_host_api *host, covet_plugin_host_ptr plugin, void **instance) noexcept:
    cdef _State state
    try:
        state = _State()
        state.host = host
        state.plugin = plugin
        state.counts = {}
    except BaseException:
        host.error(plugin, _str("path_counter: could not allocate its state"))
        return COVET_ERROR
    # The host holds no Python reference: keep one until shutdown.
    Py_INCREF(state)
    instance[0] = <void *>state
    return COVET_OK


cdef void _shutdown(void *instance) noexcept:
    Py_DECREF(<object>instance)   # the reference taken in _init


cdef int _on_request(void *instance, covet_request_host_ptr req,
                     const covet_request_view *view) noexcept:
    cdef _State state = <_State>instance
    cdef _RequestCount *rc
    cdef unsigned long long n
    try:
        # bytes(...) copies: view.path is host memory, gone when this hook returns
        path = view.path.ptr[:view.path.len]
        n = state.counts.get(path, 0)
        if n == 0 and len(state.counts) >= MAX_PATHS:
            return COVET_OK
        n += 1
        state.counts[path] = n
    except BaseException:
        state.host.error(state.plugin, _str("path_counter: could not count the request"))
        return COVET_ERROR
    rc = <_RequestCount *>malloc(sizeof(_RequestCount))
    if rc == NULL:
        state.host.error(state.plugin, _str("path_counter: out of memory"))
        return COVET_ERROR
    rc.n = n
    state.host.set_request_data(req, rc)   # freed in _on_request_done, which always runs
    return COVET_OK


cdef int _on_response(void *instance, covet_request_host_ptr req,
                      const covet_request_view *view) noexcept:
    cdef _State state = <_State>instance
    cdef _RequestCount *rc = <_RequestCount *>state.host.request_data(req)
    cdef char buf[24]
    cdef covet_plugin_str value
    if rc == NULL:   # an untracked path
        return COVET_OK
    value.ptr = buf
    value.len = <size_t>snprintf(buf, sizeof(buf), "%llu", rc.n)
    if state.host.set_header(req, _str("x-path-count"), value) != COVET_OK:
        state.host.error(state.plugin, _str("path_counter: could not set x-path-count"))
        return COVET_ERROR
    return COVET_OK


cdef void _on_request_done(void *instance, covet_request_host_ptr req) noexcept:
    cdef _State state = <_State>instance
    free(state.host.request_data(req))   # free(NULL) is a no-op: nothing was allocated
    state.host.set_request_data(req, NULL)


# The descriptor lives in static storage (a module-level C variable) and is filled when the
# module is imported, before the host reads the capsule. String literals are static too.
cdef covet_plugin_descriptor DESCRIPTOR
DESCRIPTOR.abi_version = COVET_ABI_VERSION
DESCRIPTOR.struct_size = sizeof(covet_plugin_descriptor)
DESCRIPTOR.requires_minor = 0
DESCRIPTOR.flags = COVET_FLAG_FAIL_OPEN   # a counter that fails must not fail the request
DESCRIPTOR.name = "path_counter"
DESCRIPTOR.version = "1.0.0"
DESCRIPTOR.priority = 500
DESCRIPTOR.dependencies = NULL
DESCRIPTOR.protocols = NULL
DESCRIPTOR.init = _init
DESCRIPTOR.shutdown = _shutdown
DESCRIPTOR.on_request = _on_request
DESCRIPTOR.on_response = _on_response
DESCRIPTOR.on_request_done = _on_request_done

__covet_plugin_entry_v1__ = PyCapsule_New(<void *>&DESCRIPTOR, COVET_PLUGIN_CAPSULE, NULL)
