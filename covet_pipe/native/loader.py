"""Loading native plugins: validate the file, copy it to a content-addressed path, dlopen, check the ABI."""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, cast

import cffi
from packaging.version import InvalidVersion, Version

from covet_pipe._core import ABI_MAJOR, ABI_MINOR
from covet_pipe.errors import PluginLoadError
from covet_pipe.native._elf import check_elf
from covet_pipe.native._ffi import DESCRIPTOR_SIZE_1_0, descriptor, descriptor_head, ffi
from covet_pipe.native.plugin import NativePlugin

__all__ = ["load_native", "cache_dir"]

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_CAPSULE = b"covet_plugin_entry_v1"
_MAX_LIST = 64
_MAX_TEXT = 255

_pythonapi = ctypes.pythonapi
_pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
_pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_pythonapi.PyCapsule_IsValid.restype = ctypes.c_int
_pythonapi.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def cache_dir() -> Path:
    """The private folder that holds content-addressed copies of loaded libraries."""
    base = os.environ.get("COVET_PIPE_NATIVE_CACHE") or os.path.join(
        tempfile.gettempdir(), f"covet-pipe-{os.getuid()}", "native")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    # A shared temp folder: only load from a folder nobody else can write into.
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PluginLoadError(f"{path} is writable by others (or not ours); covet-pipe will not load "
                              "libraries from it: set COVET_PIPE_NATIVE_CACHE to a private folder")
    return path


def _content_copy(data: bytes, digest: str, filename: str) -> Path:
    # A fresh path per content: dlopen of the same path returns the library already
    # loaded, and overwriting a loaded library rewrites its pages under it.
    folder = cache_dir() / digest[:32]
    folder.mkdir(exist_ok=True, mode=0o700)
    target = folder / filename
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o500)
        os.replace(tmp, target)
    return target


def _text(ptr: cffi.FFI.CData, field: str, where: str) -> str:
    if ptr == ffi.NULL:
        raise PluginLoadError(f"{where}: the descriptor's {field} is NULL; set it to a string", path=where)
    raw = cast(bytes, ffi.string(ptr, _MAX_TEXT + 1))      # a const char * reads as bytes
    if len(raw) > _MAX_TEXT:
        raise PluginLoadError(f"{where}: the descriptor's {field} is longer than {_MAX_TEXT} bytes (or not "
                              "NUL-terminated); end it with NUL and keep it short", path=where)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PluginLoadError(f"{where}: the descriptor's {field} is not UTF-8 ({raw[:40]!r})",
                              path=where) from None


def _text_list(ptr: cffi.FFI.CData, field: str, where: str) -> list[str]:
    out: list[str] = []
    if ptr == ffi.NULL:
        return out
    for i in range(_MAX_LIST + 1):
        if ptr[i] == ffi.NULL:
            return out
        out.append(_text(ptr[i], f"{field}[{i}]", where))
    raise PluginLoadError(f"{where}: the descriptor's {field} has no NULL after {_MAX_LIST} entries; "
                          "end the list with NULL", path=where)


def _describe(desc: cffi.FFI.CData, keep: Any, where: str, language: str) -> NativePlugin:
    """Check a descriptor against this host's ABI and wrap it."""
    if desc == ffi.NULL:
        raise PluginLoadError(f"{where}: covet_plugin_entry_v1() returned NULL: the plugin says it cannot "
                              "run here (see its own log or documentation)", path=where)
    head = descriptor_head(desc)
    major, minor = head.abi_version >> 16, head.abi_version & 0xFFFF
    if major != ABI_MAJOR:
        raise PluginLoadError(
            f"{where} was built for covet ABI {major}.{minor}; this covet-pipe provides ABI "
            f"{ABI_MAJOR}.{ABI_MINOR}; rebuild it against native_abi/covet_plugin.h from a covet-pipe "
            f"that provides ABI {ABI_MAJOR}.x", path=where)
    if head.struct_size < DESCRIPTOR_SIZE_1_0:
        raise PluginLoadError(
            f"{where}: its descriptor says struct_size = {head.struct_size} bytes, but an ABI 1.0 "
            f"descriptor has {DESCRIPTOR_SIZE_1_0}; fill struct_size with sizeof(covet_plugin_descriptor) "
            "(COVET_DESCRIPTOR_HEADER does) and rebuild", path=where)
    d = descriptor(desc)
    # Whatever minor it was built with: what it needs must be here (a 1.0 build cannot need more,
    # so a requires_minor above its own minor is a broken descriptor, refused the same way).
    if d.requires_minor > ABI_MINOR:
        raise PluginLoadError(
            f"{where} was built for covet ABI {major}.{minor} and needs the host functions of ABI "
            f"{major}.{d.requires_minor}; this covet-pipe provides ABI {ABI_MAJOR}.{ABI_MINOR}: upgrade "
            "covet-pipe, or build the plugin with a lower requires_minor if it can do without them",
            path=where)
    name = _text(d.name, "name", where)
    if not _NAME.match(name):
        raise PluginLoadError(f"{where}: plugin name {name!r} is not valid: use letters, digits, '_', '-' "
                              "and '.'", path=where)
    version = _text(d.version, "version", where)
    try:
        Version(version)
    except InvalidVersion:
        raise PluginLoadError(f"{where}: plugin {name!r} has version {version!r}, which is not a PEP 440 "
                              "version; use one such as \"1.2.0\"", path=where) from None
    return NativePlugin(
        desc=d, keep=keep, path=where, language=language, name=name, version=version,
        priority=int(d.priority), dependencies=_text_list(d.dependencies, "dependencies", where),
        protocols=_text_list(d.protocols, "protocols", where) or ["http"], flags=int(d.flags),
        abi=(major, minor),
    )


def _load_cython(copy: Path, where: str, digest: str, modname: str) -> NativePlugin:
    spec = importlib.util.spec_from_file_location(f"covet_native_{digest[:16]}.{modname}", copy)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"{where}: cannot be imported as a Python extension", path=where)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise PluginLoadError(f"{where}: importing it failed ({exc}); a Cython plugin is built for one "
                              "Python version: rebuild it here with 'covet-pipe build'", path=where) from None
    except Exception as exc:
        raise PluginLoadError(f"{where}: its module code raised {type(exc).__name__}: {exc}",
                              path=where) from None
    capsule = getattr(module, "__covet_plugin_entry_v1__", None)
    if capsule is None or not _pythonapi.PyCapsule_IsValid(capsule, _CAPSULE):
        raise PluginLoadError(
            f"{where} is a Python extension without a plugin descriptor: export "
            "__covet_plugin_entry_v1__ = PyCapsule_New(<void*>&DESCRIPTOR, COVET_PLUGIN_CAPSULE, NULL)",
            path=where)
    ptr = _pythonapi.PyCapsule_GetPointer(capsule, _CAPSULE)
    return _describe(ffi.cast("const covet_plugin_descriptor *", ptr), (module, capsule), where, "cython")


def load_native(path: str | os.PathLike[str]) -> NativePlugin:
    """Load a C or Cython plugin library and check it against this host's ABI.

    :raises PluginLoadError: naming the file, what is wrong, and what to do.
    """
    p = Path(path).expanduser()
    where = str(p)
    if not p.is_file():
        raise PluginLoadError(f"{where} does not exist", path=where)
    data = p.read_bytes()
    why = check_elf(data[:64], len(data))
    if why is not None:
        raise PluginLoadError(f"{where} cannot be loaded: {why}", path=where)
    digest = hashlib.sha256(data).hexdigest()
    copy = _content_copy(data, digest, p.name)
    try:
        lib = ffi.dlopen(str(copy), os.RTLD_NOW | os.RTLD_LOCAL)   # dlfcn.h's values, as ffi.RTLD_* are
    except OSError as exc:
        # cffi appends a note about ctypes.util.find_library that does not apply to a path
        why = str(exc).split("  Additionally, ctypes.util.find_library()")[0].replace(str(copy), p.name)
        if "position-independent executable" in why:
            raise PluginLoadError(f"{where} cannot be loaded: it is an executable (PIE), not a shared "
                                  "library; build it with -shared -fPIC", path=where) from None
        raise PluginLoadError(f"{where}: the dynamic loader refused it: {why}; a C plugin links against "
                              "nothing of covet-pipe's: check its own dependencies with ldd", path=where) from None
    # the library's functions are the attributes cffi makes from the cdef (mypy sees none of them)
    entry: Callable[[], cffi.FFI.CData] | None = getattr(lib, "covet_plugin_entry_v1", None)
    if entry is not None:
        plugin = _describe(entry(), lib, where, "c")
        plugin.loaded_from = str(copy)
        return plugin
    modname = p.name.split(".", 1)[0]
    probe = cffi.FFI()
    probe.cdef(f"void *PyInit_{modname}(void);") if modname.isidentifier() else None
    try:
        has_init = modname.isidentifier() and bool(getattr(probe.dlopen(str(copy)), f"PyInit_{modname}"))
    except (AttributeError, OSError):
        has_init = False
    if has_init:
        plugin = _load_cython(copy, where, digest, modname)
        plugin.loaded_from = str(copy)
        return plugin
    raise PluginLoadError(
        f"{where} exports neither covet_plugin_entry_v1 (a C plugin) nor PyInit_{modname} (a Cython "
        "plugin); export the entry with COVET_EXPORT, or build it with 'covet-pipe build'", path=where)
