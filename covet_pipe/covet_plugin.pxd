# The native plugin ABI for Cython plugins: mirrors native_abi/covet_plugin.h.
#
#     from covet_pipe.covet_plugin cimport *
#
# Build with covet_pipe.get_include() on the include path (`covet-pipe build x.pyx` does).
# A Cython plugin exports its descriptor in a capsule (see native_abi/README.md):
#
#     __covet_plugin_entry_v1__ = PyCapsule_New(<void*>&DESCRIPTOR, COVET_PLUGIN_CAPSULE, NULL)

from libc.stdint cimport int32_t, uint32_t

# Not `nogil`: hooks are called, and host functions must be called, with the GIL held
# (native_abi/README.md). Under `nogil`, Cython types the hook pointers as nogil, and a plugin's
# `cdef int on_request(...) noexcept` (or the host's own table functions) cannot be assigned to them.
cdef extern from "covet_plugin.h":
    #: the name of the capsule a Cython plugin exports as __covet_plugin_entry_v1__
    const char *COVET_PLUGIN_CAPSULE

    enum:
        COVET_ABI_MAJOR
        COVET_ABI_MINOR
        COVET_ABI_VERSION
        COVET_OK
        COVET_RESPOND
        COVET_ERROR
        COVET_E_INVALID
        COVET_E_PHASE
        COVET_E_NOTFOUND
        COVET_LOG_DEBUG
        COVET_LOG_INFO
        COVET_LOG_WARNING
        COVET_LOG_ERROR
        COVET_FLAG_NONE
        COVET_FLAG_FAIL_OPEN

    ctypedef struct covet_host_str:
        const char *ptr
        size_t len

    ctypedef struct covet_plugin_str:
        const char *ptr
        size_t len

    struct covet_request_host:
        pass
    ctypedef covet_request_host *covet_request_host_ptr

    struct covet_plugin_host:
        pass
    ctypedef covet_plugin_host *covet_plugin_host_ptr

    ctypedef struct covet_header:
        covet_host_str name
        covet_host_str value

    ctypedef struct covet_request_view:
        uint32_t struct_size
        int32_t status
        covet_host_str method
        covet_host_str path
        covet_host_str query
        const covet_header *headers
        size_t n_headers
        covet_host_str protocol

    ctypedef struct covet_host_api:
        uint32_t struct_size
        uint32_t abi_version
        int (*get_header)(covet_request_host_ptr req, covet_plugin_str name, covet_host_str *out)
        int (*set_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value)
        int (*add_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value)
        int (*remove_header)(covet_request_host_ptr req, covet_plugin_str name)
        int (*set_status)(covet_request_host_ptr req, int status)
        int (*respond)(covet_request_host_ptr req, int status, covet_plugin_str content_type,
                       covet_plugin_str body)
        void (*error)(covet_plugin_host_ptr plugin, covet_plugin_str message)
        void (*log)(covet_plugin_host_ptr plugin, int level, covet_plugin_str message)
        int (*config_get)(covet_plugin_host_ptr plugin, covet_plugin_str key, covet_host_str *out)
        void *(*request_data)(covet_request_host_ptr req)
        void (*set_request_data)(covet_request_host_ptr req, void *data)
        int (*get_client)(covet_request_host_ptr req, covet_host_str *host, int *port)
        int (*respond_header)(covet_request_host_ptr req, covet_plugin_str name, covet_plugin_str value)

    ctypedef int (*covet_plugin_init_fn)(const covet_host_api *host, covet_plugin_host_ptr plugin,
                                         void **instance)
    ctypedef void (*covet_plugin_shutdown_fn)(void *instance)
    ctypedef int (*covet_plugin_request_fn)(void *instance, covet_request_host_ptr req,
                                            const covet_request_view *view)
    ctypedef int (*covet_plugin_response_fn)(void *instance, covet_request_host_ptr req,
                                             const covet_request_view *view)
    ctypedef void (*covet_plugin_done_fn)(void *instance, covet_request_host_ptr req)

    ctypedef struct covet_plugin_descriptor:
        uint32_t abi_version
        uint32_t struct_size
        uint32_t requires_minor
        uint32_t flags
        const char *name
        const char *version
        int32_t priority
        int32_t reserved
        const char *const *dependencies
        const char *const *protocols
        covet_plugin_init_fn init
        covet_plugin_shutdown_fn shutdown
        covet_plugin_request_fn on_request
        covet_plugin_response_fn on_response
        covet_plugin_done_fn on_request_done
