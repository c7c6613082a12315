"""Builds of the C test plugins in tests/native/plugins, with the system compiler, cached per session."""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PLUGINS", "ABI_DIR", "cc", "cplugins", "probe", "stats", "STATS"]

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = Path(__file__).resolve().parent / "plugins"
ABI_DIR = ROOT / "native_abi"
CFLAGS = ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(ABI_DIR)]

#: what probe_stats() returns, in order
STATS = ("init", "shutdown", "request", "response", "done", "allocated", "freed", "no_gil")

_built: dict[tuple[Any, ...], Path] = {}
_out: list[Path] = []


def _out_dir() -> Path:
    # One folder for the session, shared by every module that builds (a module global).
    if not _out:
        folder = Path(tempfile.mkdtemp(prefix="covet-native-plugins-"))
        atexit.register(shutil.rmtree, folder, True)
        _out.append(folder)
    return _out[0]


@pytest.fixture(scope="session")
def cplugins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the test plugins under pytest's temporary folders (use it before building)."""
    if not _out:
        _out.append(tmp_path_factory.mktemp("cplugins"))
    return _out[0]


def cc(source: str, out_name: str, *flags: str, defines: dict[str, Any] | None = None,
       shared: bool = True) -> Path:
    """Compile tests/native/plugins/<source> into <out_name> (cached by arguments)."""
    args = [f"-D{k}" if v is True else f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    key = (source, out_name, flags, tuple(args), shared)
    if key in _built:
        return _built[key]
    folder = _out_dir() / hashlib.sha1(repr(key).encode()).hexdigest()[:12]
    folder.mkdir()
    out = folder / out_name
    base = CFLAGS if shared else [f for f in CFLAGS if f not in ("-shared", "-fPIC")]
    cmd = ["cc", *base, *flags, *args, str(PLUGINS / source), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr}"
    _built[key] = out
    return out


def probe(name: str = "probe", *, priority: int = 100, tag: str | None = None, **defines: Any) -> Path:
    """The probe plugin built as NAME=name, PRIORITY=priority, TAG=tag (+ other -D knobs)."""
    d: dict[str, Any] = {"NAME": f'"{name}"', "PRIORITY": priority, "TAG": f'"{tag or name}"'}
    d.update(defines)
    return cc("probe.c", f"{name}.so", defines=d)


def stats(plugin: Any) -> dict[str, int]:
    """The counters of a loaded probe: its globals live in the content-addressed copy."""
    assert plugin.loaded_from, f"{plugin.path} was not loaded by load_native"
    lib = ctypes.CDLL(plugin.loaded_from)   # the loaded copy's handle: dlopen counts references
    out = (ctypes.c_int * len(STATS))()
    lib.probe_stats(out)
    return dict(zip(STATS, out))
