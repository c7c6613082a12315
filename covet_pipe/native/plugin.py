"""NativePlugin: a C or Cython plugin, as the registry and the core see it."""

from __future__ import annotations

import ctypes
from typing import Any

import cffi

from covet_pipe._core import ABI_MAJOR, ABI_MINOR, NativeHost, host_api_address
from covet_pipe.errors import PluginError
from covet_pipe.native._ffi import Descriptor, ffi
from covet_pipe.plugin import MiddlewarePlugin

__all__ = ["NativePlugin"]

FLAG_FAIL_OPEN = 1

# init() and shutdown() are called through ctypes PYFUNCTYPE prototypes, which keep the GIL
# held: a cffi call releases it, and the host functions init() calls (error, log, config_get)
# touch Python objects.
_INIT = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))
_SHUTDOWN = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)


def _addr(p: cffi.FFI.CData) -> int:
    return int(ffi.cast("uintptr_t", p))


class NativePlugin(MiddlewarePlugin):
    """A plugin whose hooks are C functions behind covet_plugin.h.

    The registry handles it like any plugin (dependencies, lifecycle, health); the
    core calls its hooks through C pointers. It holds the loaded library: the library
    stays loaded while any chain snapshot still holds this plugin.
    """

    style = "hook"
    #: the descriptor's name (always set, unlike a plugin class's optional one)
    name: str
    #: marks native plugins for the registry (kinds, entries)
    _covet_native = True

    def __init__(self, *, desc: Descriptor, keep: Any, path: str, language: str, name: str, version: str,
                 priority: int, dependencies: list[str], protocols: list[str], flags: int,
                 abi: tuple[int, int]) -> None:
        self.name = name
        self.version = version
        self.priority = priority
        self.dependencies = dependencies
        self.protocols = frozenset(protocols)
        self.failure_policy = "open" if flags & FLAG_FAIL_OPEN else "closed"
        #: where it was loaded from, and what it is written in ("c" or "cython")
        self.path = path
        self.language = language
        #: the content-addressed copy that was loaded (set by load_native)
        self.loaded_from: str | None = None
        self.abi = abi
        self._desc = desc
        self._keep = keep          # the cffi library (and, for Cython, the module)
        self._instance = ffi.NULL
        self.host: NativeHost | None = None
        self._started = False

    async def initialize(self, ctx: Any) -> None:
        """Call the plugin's init() with the host table and this plugin's handle."""
        self.host = NativeHost(self.name, ctx.config)
        if self._desc.init == ffi.NULL:
            self._started = True
            return
        instance = ctypes.c_void_p()
        rc = _INIT(_addr(self._desc.init))(host_api_address(), self.host.address, ctypes.byref(instance))
        if rc != 0:
            why = self.host.last_error or "it gave no reason (it should call host->error first)"
            raise PluginError(f"native plugin {self.name!r} ({self.path}): init() returned {rc}: {why}",
                              plugin_name=self.name, path=self.path)
        self._instance = ffi.cast("void *", instance.value or 0)
        self._started = True

    async def shutdown(self) -> None:
        """Call the plugin's shutdown() once; the core calls no hook after this."""
        if self._started and self._desc.shutdown != ffi.NULL:
            _SHUTDOWN(_addr(self._desc.shutdown))(_addr(self._instance))
        self._started = False

    def native_hooks(self) -> tuple[int, int, int, int]:
        """Addresses of on_request, on_response, on_request_done and the instance."""
        d = self._desc
        return _addr(d.on_request), _addr(d.on_response), _addr(d.on_request_done), _addr(self._instance)

    def metadata(self) -> dict[str, Any]:
        hooks = [h for h in ("init", "shutdown", "on_request", "on_response", "on_request_done")
                 if getattr(self._desc, h) != ffi.NULL]
        return {"description": f"native ({self.language}) plugin from {self.path}",
                "abi": f"{self.abi[0]}.{self.abi[1]}", "host_abi": f"{ABI_MAJOR}.{ABI_MINOR}",
                "hooks": hooks, "loaded_from": self.loaded_from}
