"""The cffi declarations of covet_plugin.h that the loader needs (ABI mode: no compiler)."""

from __future__ import annotations

from typing import Protocol, cast

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


# cffi reads a struct's fields through the pointer by the cdef above; to mypy a cdata has no
# fields. These protocols name the fields covet-pipe reads, with the types cffi gives them:
# integers as int, pointers (strings, lists, functions) as cdata.

class DescriptorHead(Protocol):
    """A ``covet_descriptor_head *``: the two fields every ABI version starts with."""

    abi_version: int
    struct_size: int


class Descriptor(DescriptorHead, Protocol):
    """A ``const covet_plugin_descriptor *``."""

    requires_minor: int
    flags: int
    name: cffi.FFI.CData
    version: cffi.FFI.CData
    priority: int
    dependencies: cffi.FFI.CData
    protocols: cffi.FFI.CData
    init: cffi.FFI.CData
    shutdown: cffi.FFI.CData
    on_request: cffi.FFI.CData
    on_response: cffi.FFI.CData
    on_request_done: cffi.FFI.CData


def descriptor_head(ptr: cffi.FFI.CData) -> DescriptorHead:
    """The descriptor *ptr* points to, read as its head only."""
    return cast(DescriptorHead, ffi.cast("covet_descriptor_head *", ptr))


def descriptor(ptr: cffi.FFI.CData) -> Descriptor:
    """The descriptor *ptr* points to, read whole."""
    return cast(Descriptor, ffi.cast("const covet_plugin_descriptor *", ptr))
