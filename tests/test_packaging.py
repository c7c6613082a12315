"""Packaging: an uncompiled checkout says how to build; the package ships its stubs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import covet_pipe

PKG = Path(covet_pipe.__file__).parent


def test_import_without_compiled_core_says_how_to_build(tmp_path):
    # -S: no site-packages, so the editable install cannot supply the built core.
    copy = tmp_path / "covet_pipe"
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.c"))
    proc = subprocess.run([sys.executable, "-S", "-c", "import covet_pipe"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "is not built" in proc.stderr
    assert "pip install ." in proc.stderr


def test_package_ships_stubs_and_py_typed():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_core.pyi").is_file()


def test_builtin_plugins_import_as_covet_pipe_builtin():
    from covet_pipe.builtin import RequestId
    assert RequestId().name == "request_id"


def test_seed_import_paths_work():
    from covet_pipe.plugins import PluginConfig, PluginManager
    from covet_pipe.types import PluginContext, Request, Response
    assert PluginManager and PluginConfig and Request and Response and PluginContext
