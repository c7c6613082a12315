# Native plugins in the core: the host function table, the per-request view, the handles.
# Included by _core.pyx. The loader (covet_pipe/native/) validates libraries with cffi;
# from then on the core calls their hooks through C pointers, with no cffi per request.

from covet_pipe.logsafe import logger as _safe_logger, printable as _printable
from covet_pipe.routing import route_path as _route_path


cdef class NativeHost:
    """The host's handle for one loaded native plugin: its config, its log, its last error."""
    cdef readonly str name
    cdef dict _config
    cdef object _logger
    cdef public str last_error

    def __init__(self, str name, config=None):
        self.name = name
        # Values as bytes, alive until the plugin is gone: config_get hands out pointers.
        self._config = {}
        for k, v in (config or {}).items():
            if isinstance(v, bytes):
                b = v
            elif isinstance(v, str):
                b = v.encode("utf-8")
            elif isinstance(v, bool):
                b = b"true" if v else b"false"
            elif isinstance(v, (int, float)):
                b = str(v).encode()
            else:
                b = _json.dumps(v).encode()
            self._config[str(k).encode("utf-8")] = b
        self._logger = _logging.getLogger(f"covet_pipe.plugins.{name}")
        self.last_error = None

    @property
    def address(self):
        """The handle passed to the plugin's init() (valid while this object lives)."""
        return <uintptr_t><void *>self


cdef inline str _text(covet_plugin_str s):
    if s.ptr == NULL or s.len == 0:
        return ""
    return (<bytes>PyBytes_FromStringAndSize(s.ptr, s.len)).decode("utf-8", "replace")


cdef inline bytes _raw_bytes(covet_plugin_str s):
    if s.ptr == NULL:
        return b""
    return PyBytes_FromStringAndSize(s.ptr, s.len)


cdef inline RequestContext _ctx_of(covet_request_host_ptr h):
    return <RequestContext><void *>h


cdef Headers _phase_headers(RequestContext ctx):
    if ctx._phase == 1:
        return ctx._resp.headers
    return ctx.request.headers


# ---- host functions (called from plugin C code, GIL held; never raise) --------

cdef int _h_get_header(covet_request_host_ptr h, covet_plugin_str name, covet_host_str *out) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    cdef bytes key, k, v
    out.ptr = NULL
    out.len = 0
    try:
        key = _raw_bytes(name).lower()
        for k, v in _phase_headers(ctx)._raw:
            if k == key or (len(k) == len(key) and k.lower() == key):
                # Keep it alive until the hook returns, whatever edits follow.
                if ctx._keep_more is None:
                    ctx._keep_more = []
                ctx._keep_more.append(v)
                out.ptr = PyBytes_AS_STRING(v)
                out.len = PyBytes_GET_SIZE(v)
                return COVET_OK
        return COVET_E_NOTFOUND
    except BaseException:
        return COVET_E_INVALID


cdef int _h_edit_header(covet_request_host_ptr h, covet_plugin_str name, covet_plugin_str value,
                        int op) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    if name.ptr == NULL or name.len == 0:
        return COVET_E_INVALID
    cdef Headers headers
    cdef bytes key
    try:
        headers = _phase_headers(ctx)
        key = _raw_bytes(name).lower()
        if op == 0:
            headers._c_set(key, _raw_bytes(value))
        elif op == 1:
            headers._c_add(key, _raw_bytes(value))
        elif headers._c_remove(key) == 0:
            return COVET_E_NOTFOUND
        ctx._host_edited = True
        return COVET_OK
    except BaseException:
        return COVET_E_INVALID


cdef int _h_set_header(covet_request_host_ptr h, covet_plugin_str name, covet_plugin_str value) noexcept:
    return _h_edit_header(h, name, value, 0)


cdef int _h_add_header(covet_request_host_ptr h, covet_plugin_str name, covet_plugin_str value) noexcept:
    return _h_edit_header(h, name, value, 1)


cdef int _h_remove_header(covet_request_host_ptr h, covet_plugin_str name) noexcept:
    cdef covet_plugin_str empty
    empty.ptr = NULL
    empty.len = 0
    return _h_edit_header(h, name, empty, 2)


cdef int _h_set_status(covet_request_host_ptr h, int status) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    if ctx._phase != 1:
        return COVET_E_PHASE
    if status < 100 or status > 999:
        return COVET_E_INVALID
    ctx._resp._status = status
    ctx._host_edited = True
    return COVET_OK


cdef int _h_respond(covet_request_host_ptr h, int status, covet_plugin_str content_type,
                    covet_plugin_str body) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    if ctx._phase != 0:
        return COVET_E_PHASE
    if status < 100 or status > 999:
        return COVET_E_INVALID
    try:
        ctype = _text(content_type)
        ctx._native_answer = Response(status, None, _raw_bytes(body), ctype or None)
        return COVET_OK
    except BaseException:
        return COVET_E_INVALID


cdef void _h_error(covet_plugin_host_ptr p, covet_plugin_str message) noexcept:
    cdef NativeHost host = <NativeHost><void *>p
    try:
        host.last_error = _text(message) or "(no message)"
    except BaseException:
        pass  # nothing to report it through


cdef void _h_log(covet_plugin_host_ptr p, int level, covet_plugin_str message) noexcept:
    cdef NativeHost host = <NativeHost><void *>p
    try:
        host._logger.log(level if level > 0 else 20, "%s", _printable(_text(message)))
    except BaseException:
        pass  # a log line is not worth failing a request for


cdef int _h_config_get(covet_plugin_host_ptr p, covet_plugin_str key, covet_host_str *out) noexcept:
    cdef NativeHost host = <NativeHost><void *>p
    out.ptr = NULL
    out.len = 0
    try:
        v = host._config.get(_raw_bytes(key))
        if v is None:
            return COVET_E_NOTFOUND
        out.ptr = PyBytes_AS_STRING(v)
        out.len = PyBytes_GET_SIZE(v)
        return COVET_OK
    except BaseException:
        return COVET_E_INVALID


cdef void *_h_request_data(covet_request_host_ptr h) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    if ctx._data is None:
        return NULL
    v = ctx._data.get(ctx._cur_i)
    return NULL if v is None else <void *><uintptr_t>v


cdef void _h_set_request_data(covet_request_host_ptr h, void *data) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    try:
        if ctx._data is None:
            ctx._data = {}
        ctx._data[ctx._cur_i] = <uintptr_t>data
    except BaseException:
        pass  # out of memory: the plugin sees NULL next time


cdef int _h_get_client(covet_request_host_ptr h, covet_host_str *host, int *port) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    cdef bytes ip
    host.ptr = NULL
    host.len = 0
    port[0] = 0
    try:
        client = ctx.request.client
        if not client:
            return COVET_E_NOTFOUND
        ip = str(client[0]).encode("ascii")
        if ctx._keep_more is None:
            ctx._keep_more = []
        ctx._keep_more.append(ip)      # alive until the hook returns
        host.ptr = PyBytes_AS_STRING(ip)
        host.len = PyBytes_GET_SIZE(ip)
        port[0] = int(client[1])
        return COVET_OK
    except BaseException:
        return COVET_E_NOTFOUND


cdef int _h_respond_header(covet_request_host_ptr h, covet_plugin_str name, covet_plugin_str value) noexcept:
    cdef RequestContext ctx = _ctx_of(h)
    if ctx._phase != 0 or ctx._native_answer is None:
        return COVET_E_PHASE
    if name.ptr == NULL or name.len == 0:
        return COVET_E_INVALID
    cdef Headers headers
    try:
        headers = ctx._native_answer.headers
        headers._c_add(_raw_bytes(name).lower(), _raw_bytes(value))
        return COVET_OK
    except BaseException:
        return COVET_E_INVALID


cdef covet_host_api _HOST_API
_HOST_API.struct_size = sizeof(covet_host_api)
_HOST_API.abi_version = COVET_ABI_VERSION
_HOST_API.get_header = _h_get_header
_HOST_API.set_header = _h_set_header
_HOST_API.add_header = _h_add_header
_HOST_API.remove_header = _h_remove_header
_HOST_API.set_status = _h_set_status
_HOST_API.respond = _h_respond
_HOST_API.error = _h_error
_HOST_API.log = _h_log
_HOST_API.config_get = _h_config_get
_HOST_API.request_data = _h_request_data
_HOST_API.set_request_data = _h_set_request_data
_HOST_API.get_client = _h_get_client
_HOST_API.respond_header = _h_respond_header


def host_api_address():
    """Address of the host function table handed to native plugins' init()."""
    return <uintptr_t>&_HOST_API


ABI_VERSION = COVET_ABI_VERSION
ABI_MAJOR = COVET_ABI_MAJOR
ABI_MINOR = COVET_ABI_MINOR
HOST_API_SIZE = sizeof(covet_host_api)
DESCRIPTOR_SIZE = sizeof(covet_plugin_descriptor)
VIEW_SIZE = sizeof(covet_request_view)


# ---- the view -----------------------------------------------------------------

cdef inline void _set_str(covet_host_str *dst, object s) except *:
    cdef Py_ssize_t n = 0
    if type(s) is bytes:
        dst.ptr = PyBytes_AS_STRING(s)
        dst.len = PyBytes_GET_SIZE(s)
    elif type(s) is str:
        dst.ptr = PyUnicode_AsUTF8AndSize(s, &n)   # cached in the str object
        dst.len = n
    else:
        dst.ptr = b""
        dst.len = 0


cdef long _edit_version(RequestContext ctx):
    cdef Request req = ctx.request
    cdef long v = <long>req._version
    if req._headers is not None:
        v += <long>req._headers._version
    if ctx._phase == 1 and ctx._resp is not None:
        # the status in the high bits: a lower status must not cancel out a header edit
        v += (<long>ctx._resp._status + 1) << 40
        if ctx._resp._headers is not None:
            v += <long>ctx._resp._headers._version
    return v


cdef int _build_view(RequestContext ctx) except -1:
    """Point the view at the current method, path, query and headers (no copies)."""
    cdef Request req = ctx.request
    cdef dict scope = req.scope
    cdef list raw
    cdef Py_ssize_t i, n
    cdef covet_header *arr
    cdef object item
    if ctx._phase == 1:
        raw = ctx._resp._headers._raw if ctx._resp._headers is not None else (ctx._resp._raw_src or [])
        ctx._view.status = ctx._resp._status
    else:
        raw = req._headers._raw if req._headers is not None else scope.get("headers")
        if type(raw) is not list:
            raw = list(raw or ())
        ctx._view.status = 0
    if type(raw) is not list:
        raw = list(raw)
    n = PyList_GET_SIZE(raw)
    if n <= 16:
        arr = ctx._inline
    else:
        if n > ctx._heap_cap:
            arr = <covet_header *>realloc(ctx._heap, n * sizeof(covet_header))
            if arr == NULL:
                raise MemoryError()
            ctx._heap = arr
            ctx._heap_cap = n
        arr = ctx._heap
    for i in range(n):
        item = <object>PyList_GET_ITEM(raw, i)
        _set_str(&arr[i].name, <object>PyTuple_GET_ITEM(item, 0) if type(item) is tuple else item[0])
        _set_str(&arr[i].value, <object>PyTuple_GET_ITEM(item, 1) if type(item) is tuple else item[1])
    ctx._view.struct_size = sizeof(covet_request_view)
    _set_str(&ctx._view.method, scope.get("method", ""))
    # The route path, as Python guards see it: a native guard must not miss "/api/admin" under root_path "/api".
    path = scope.get("path", "")
    if scope.get("root_path"):
        path = _route_path(scope)
    _set_str(&ctx._view.path, path)
    _set_str(&ctx._view.query, scope.get("query_string", b""))
    _set_str(&ctx._view.protocol, ctx.protocol)
    ctx._view.headers = arr
    ctx._view.n_headers = n
    ctx._view_keep = (raw, scope, path)     # the view points into these
    ctx._view_ver = _edit_version(ctx)
    return 0


cdef inline int _ensure_view(RequestContext ctx) except -1:
    if ctx._view_keep is None or ctx._view_ver != _edit_version(ctx):
        _build_view(ctx)
    return 0


cdef Response _native_failed(Entry e, RequestContext ctx, int rc, str where):
    """A native hook returned COVET_ERROR or an unknown code: its failure policy decides."""
    host = getattr(e.c_keep, "host", None)
    message = getattr(host, "last_error", None) or "no message (call host->error before COVET_ERROR)"
    if host is not None:
        host.last_error = None
    if rc == COVET_ERROR:
        what = f"returned COVET_ERROR: {message}"
    elif rc == COVET_RESPOND:
        what = (f"returned COVET_RESPOND from {where}, where only COVET_OK or COVET_ERROR may be "
                "returned; answer from on_request with host->respond()")
    else:
        what = (f"returned {rc}, which is not a covet result code (COVET_OK 0, COVET_RESPOND 1, "
                f"COVET_ERROR -1); fix the plugin's {where}")
    exc = RuntimeError(what)
    if _hook_failed(e, where, exc):
        _skip(ctx, e)
        return None
    return _error_response(500)


cdef Response _native_request_outcome(Segment seg, RequestContext ctx, Py_ssize_t i, int rc):
    """A native on_request returned something other than COVET_OK (out of the loop)."""
    cdef Entry e = <Entry>seg.hooks[i]
    cdef Response resp
    if rc == COVET_RESPOND and ctx._native_answer is not None:
        resp = ctx._native_answer
        _count_short(e.stats, resp._status)
        ctx._native_answer = None
        return resp
    if rc == COVET_RESPOND:
        host = getattr(e.c_keep, "host", None)
        if host is not None:
            host.last_error = "returned COVET_RESPOND without calling host->respond() first"
        rc = COVET_ERROR
    resp = _native_failed(e, ctx, rc, "on_request")
    if resp is not None:
        ctx._ran = i
    return resp


cdef void _native_done(Segment seg, RequestContext ctx) noexcept:
    """on_request_done for every native plugin the request reached: it always runs."""
    cdef Py_ssize_t i
    cdef NativeSlot *slot
    ctx._seg = seg
    for i in range(min(ctx._reached, seg.count)):
        slot = &seg.slots[i]
        if slot.done != NULL:
            ctx._cur_i = i
            slot.done(slot.instance, <covet_request_host_ptr><void *>ctx)
    ctx._view_keep = None
