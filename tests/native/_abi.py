"""Test harness for native plugins: the header read by cffi, builds, and a host in Python.

The host here is a stand-in for the core's, written from covet_plugin.h alone, so the examples
are checked against the ABI as documented, not against one host's behaviour. Hooks are called
through ctypes ``PYFUNCTYPE`` prototypes, which keep the GIL held, as the core does (cffi would
release it, and a Cython plugin's hooks touch Python objects).
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cffi

import covet_pipe

__all__ = ["EXAMPLES", "HEADER", "CONST", "ffi", "build", "c_descriptor", "capsule_descriptor",
           "import_extension", "Plugin", "Request"]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "native_abi" / "examples"
HEADER = Path(covet_pipe.get_include()) / "covet_plugin.h"


def _declarations(text: str) -> str:
    """The header's C declarations, for ``ffi.cdef``: no comments, no preprocessor lines,
    nothing under ``#ifdef __cplusplus``."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out: list[str] = []
    blocks: list[list[bool]] = []
    continued = False
    for line in text.splitlines():
        stripped = line.strip()
        if continued:
            continued = stripped.endswith("\\")
            continue
        if stripped.startswith("#"):
            continued = stripped.endswith("\\")
            directive = stripped[1:].split()[:1]
            if directive in (["if"], ["ifdef"], ["ifndef"]):
                # [C++-only lines follow, in the #else branch]
                blocks.append([directive != ["ifndef"] and "__cplusplus" in stripped, False])
            elif directive == ["else"]:
                blocks[-1][1] = True
            elif directive == ["endif"]:
                blocks.pop()
            continue
        if not any(cpp and not in_else for cpp, in_else in blocks):
            # cffi declares the entry itself where it needs it; drop the export attribute.
            out.append(line.replace("COVET_EXPORT ", ""))
    return "\n".join(out)


def _constants(text: str) -> dict[str, int]:
    """Every ``#define COVET_X <integer>`` of the header."""
    found = {}
    for name, value in re.findall(r"^#define\s+(COVET_\w+)\s+\(?(-?(?:0x[0-9A-Fa-f]+|\d+))u?\)?\s*(?:/\*.*)?$",
                                  text, flags=re.M):
        found[name] = int(value, 0)
    return found


_TEXT = HEADER.read_text()
CONST = _constants(_TEXT)
CONST["COVET_ABI_VERSION"] = (CONST["COVET_ABI_MAJOR"] << 16) | CONST["COVET_ABI_MINOR"]

ffi = cffi.FFI()
ffi.cdef(_declarations(_TEXT))
# (the header itself declares covet_plugin_entry_v1, so the cdef above has it)


def build(source: Path, out_dir: Path | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m covet_pipe build SOURCE [-o OUT_DIR]`` and return what it did."""
    cmd = [sys.executable, "-m", "covet_pipe", "build", str(source), *extra]
    if out_dir is not None:
        cmd += ["-o", str(out_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def c_descriptor(so: Path) -> tuple[Any, Any]:
    """dlopen a C plugin and call its entry symbol: (the library, the descriptor pointer).
    Keep the library alive while the descriptor is used."""
    lib = ffi.dlopen(str(so))
    return lib, lib.covet_plugin_entry_v1()


def import_extension(so: Path) -> Any:
    """Import a built Cython plugin from its file, as the host does."""
    name = so.name.split(".", 1)[0]
    spec = importlib.util.spec_from_file_location(name, so)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_capsule_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_name.restype = ctypes.c_char_p
_capsule_name.argtypes = [ctypes.py_object]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def capsule_descriptor(module: Any) -> tuple[bytes, Any]:
    """(the capsule's name, the descriptor it holds) of an imported Cython plugin."""
    capsule = module.__covet_plugin_entry_v1__
    name = _capsule_name(capsule)
    pointer = _capsule_pointer(capsule, name)
    return name, ffi.cast("const covet_plugin_descriptor *", pointer)


# ==== a host in Python =======================================================================

def _addr(cdata: Any) -> int:
    return int(ffi.cast("uintptr_t", cdata))


_INIT = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_SHUTDOWN = ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
_HOOK = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_DONE = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class Request:
    """One request as the Python host sees it: headers are edited here, never in the view."""

    def __init__(self, path: str = "/", headers: list[tuple[bytes, bytes]] | None = None,
                 method: str = "GET") -> None:
        self.method = method.encode()
        self.path = path.encode()
        self.headers = list(headers or [])
        self.phase = "request"
        self.status = 0
        self.response: tuple[int, bytes, bytes] | None = None
        self.data = ffi.NULL
        self.handle = ffi.new_handle(self)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    def getall(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k == name]


def _b(s: Any) -> bytes:
    return ffi.unpack(s.ptr, s.len) if s.len else b""


def _req(handle: Any) -> Request:
    return ffi.from_handle(ffi.cast("void *", handle))  # type: ignore[no-any-return]


class Plugin:
    """A loaded descriptor, its host table and instance, driven hook by hook."""

    def __init__(self, descriptor: Any, config: dict[str, str] | None = None) -> None:
        self.d = descriptor
        self.config = {k.encode(): v.encode() for k, v in (config or {}).items()}
        self.errors: list[str] = []
        self.logs: list[tuple[int, str]] = []
        self.strings: list[Any] = []   # host memory handed out (config, headers): the host's to free
        self._callbacks: list[Any] = []
        self._handle = ffi.new_handle(self)
        self.api = ffi.new("covet_host_api *")
        self.api.struct_size = ffi.sizeof("covet_host_api")
        self.api.abi_version = CONST["COVET_ABI_VERSION"]
        for name in ("get_header", "set_header", "add_header", "remove_header", "set_status",
                     "respond", "error", "log", "config_get", "request_data", "set_request_data"):
            cb = ffi.callback(ffi.typeof(getattr(self.api, name)), getattr(self, "_" + name))
            self._callbacks.append(cb)
            setattr(self.api, name, cb)
        self.instance = ffi.new("void **")

    # -- host functions ------------------------------------------------------------------------
    def _get_header(self, req: Any, name: Any, out: Any) -> int:
        r = _req(req)
        value = r.header(_b(name).lower())
        if value is None:
            out.ptr, out.len = ffi.NULL, 0
            return CONST["COVET_E_NOTFOUND"]
        buf = ffi.new("char[]", value)
        self.strings.append(buf)
        out.ptr, out.len = buf, len(value)
        return CONST["COVET_OK"]

    def _set_header(self, req: Any, name: Any, value: Any) -> int:
        r, key = _req(req), _b(name).lower()
        if not key:
            return CONST["COVET_E_INVALID"]
        r.headers = [(k, v) for k, v in r.headers if k != key] + [(key, _b(value))]
        return CONST["COVET_OK"]

    def _add_header(self, req: Any, name: Any, value: Any) -> int:
        r, key = _req(req), _b(name).lower()
        if not key:
            return CONST["COVET_E_INVALID"]
        r.headers.append((key, _b(value)))
        return CONST["COVET_OK"]

    def _remove_header(self, req: Any, name: Any) -> int:
        r, key = _req(req), _b(name).lower()
        kept = [(k, v) for k, v in r.headers if k != key]
        found = len(kept) != len(r.headers)
        r.headers = kept
        return CONST["COVET_OK"] if found else CONST["COVET_E_NOTFOUND"]

    def _set_status(self, req: Any, status: int) -> int:
        r = _req(req)
        if r.phase != "response":
            return CONST["COVET_E_PHASE"]
        r.status = status
        return CONST["COVET_OK"]

    def _respond(self, req: Any, status: int, content_type: Any, body: Any) -> int:
        r = _req(req)
        if r.phase != "request":
            return CONST["COVET_E_PHASE"]
        if not 100 <= status <= 999:
            return CONST["COVET_E_INVALID"]
        r.response = (status, _b(content_type), _b(body))
        return CONST["COVET_OK"]

    def _error(self, plugin: Any, message: Any) -> None:
        assert _addr(plugin) == _addr(self._handle), "error() got a handle that is not this plugin's"
        self.errors.append(_b(message).decode())

    def _log(self, plugin: Any, level: int, message: Any) -> None:
        self.logs.append((level, _b(message).decode()))

    def _config_get(self, plugin: Any, key: Any, out: Any) -> int:
        value = self.config.get(_b(key))
        if value is None:
            out.ptr, out.len = ffi.NULL, 0
            return CONST["COVET_E_NOTFOUND"]
        buf = ffi.new("char[]", value)
        self.strings.append(buf)
        out.ptr, out.len = buf, len(value)
        return CONST["COVET_OK"]

    def _request_data(self, req: Any) -> Any:
        return _req(req).data

    def _set_request_data(self, req: Any, data: Any) -> None:
        _req(req).data = data

    # -- driving the plugin --------------------------------------------------------------------
    def init(self) -> int:
        fn = _INIT(_addr(ffi.cast("void *", self.d.init)))
        return int(fn(_addr(self.api), _addr(self._handle), _addr(self.instance)))

    def shutdown(self) -> None:
        if self.d.shutdown != ffi.NULL:
            _SHUTDOWN(_addr(ffi.cast("void *", self.d.shutdown)))(_addr(self.instance[0]))

    def _view(self, r: Request) -> tuple[Any, list[Any]]:
        keep: list[Any] = []

        def s(target: Any, value: bytes) -> None:
            buf = ffi.new("char[]", value)
            keep.append(buf)
            target.ptr, target.len = buf, len(value)

        view = ffi.new("covet_request_view *")
        view.struct_size = ffi.sizeof("covet_request_view")
        view.status = r.status
        s(view.method, r.method)
        s(view.path, r.path)
        s(view.query, b"")
        s(view.protocol, b"http")
        headers = ffi.new("covet_header[]", max(len(r.headers), 1))
        for i, (k, v) in enumerate(r.headers):
            s(headers[i].name, k)
            s(headers[i].value, v)
        view.headers, view.n_headers = headers, len(r.headers)
        keep.append(headers)
        return view, keep

    def _hook(self, fnptr: Any, r: Request) -> int:
        view, keep = self._view(r)
        fn = _HOOK(_addr(ffi.cast("void *", fnptr)))
        rc = int(fn(_addr(self.instance[0]), _addr(r.handle), _addr(view)))
        del keep   # host memory of the view: gone once the hook returned
        return rc

    def request(self, r: Request) -> int:
        r.phase = "request"
        return self._hook(self.d.on_request, r) if self.d.on_request != ffi.NULL else CONST["COVET_OK"]

    def response(self, r: Request, status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> int:
        r.phase, r.status = "response", status
        r.headers = list(headers or [])
        return self._hook(self.d.on_response, r) if self.d.on_response != ffi.NULL else CONST["COVET_OK"]

    def done(self, r: Request) -> None:
        if self.d.on_request_done != ffi.NULL:
            _DONE(_addr(ffi.cast("void *", self.d.on_request_done)))(_addr(self.instance[0]), _addr(r.handle))
