"""Native plugins: C and Cython plugins behind native_abi/covet_plugin.h, loaded with cffi."""

from covet_pipe.native.loader import cache_dir, load_native
from covet_pipe.native.plugin import NativePlugin

__all__ = ["NativePlugin", "cache_dir", "load_native"]
