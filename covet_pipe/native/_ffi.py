"""The cffi declarations of covet_plugin.h that the loader needs (ABI mode: no compiler)."""

from __future__ import annotations

import cffi

CDEF = """
typedef struct { const char *ptr; size_t len; } covet_host_str;
typedef struct { const char *ptr; size_t len; } covet_plugin_str;
typedef struct covet_request_host *covet_request_host_ptr;
typedef struct covet_plugin_host *covet_plugin_host_ptr;
typedef struct covet_host_api covet_host_api;
typedef struct covet_request_view covet_request_view;

typedef int (*covet_plugin_init_fn)(const covet_host_api *host, covet_plugin_host_ptr plugin,
                                    void **instance);
typedef void (*covet_plugin_shutdown_fn)(void *instance);
typedef int (*covet_plugin_request_fn)(void *instance, covet_request_host_ptr req,
                                       const covet_request_view *view);
typedef int (*covet_plugin_response_fn)(void *instance, covet_request_host_ptr req,
                                        const covet_request_view *view);
typedef void (*covet_plugin_done_fn)(void *instance, covet_request_host_ptr req);

typedef struct {
  uint32_t abi_version;
  uint32_t struct_size;
} covet_descriptor_head;

typedef struct covet_plugin_descriptor {
  uint32_t abi_version;
  uint32_t struct_size;
  uint32_t requires_minor;
  uint32_t flags;
  const char *name;
  const char *version;
  int32_t priority;
  int32_t reserved;
  const char *const *dependencies;
  const char *const *protocols;
  covet_plugin_init_fn init;
  covet_plugin_shutdown_fn shutdown;
  covet_plugin_request_fn on_request;
  covet_plugin_response_fn on_response;
  covet_plugin_done_fn on_request_done;
} covet_plugin_descriptor;

const covet_plugin_descriptor *covet_plugin_entry_v1(void);
"""

ffi = cffi.FFI()
ffi.cdef(CDEF)

#: the size of the 1.0 descriptor: anything smaller cannot be a covet plugin
DESCRIPTOR_SIZE_1_0 = ffi.sizeof("covet_plugin_descriptor")
