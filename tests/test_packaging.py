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


def test_plugins_and_types_import_paths_work():
    from covet_pipe.plugins import PluginConfig, PluginManager
    from covet_pipe.types import PluginContext, Request, Response
    assert PluginManager and PluginConfig and Request and Response and PluginContext


def test_pyproject_lists_every_package_under_covet_pipe():
    # the fast half of tests/test_install.py: a package left out of this list is missing from the
    # wheel and the sdist, though an editable install (and so every other test) still finds it
    import tomllib
    root = PKG.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(root).parts) for p in PKG.rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "covet_pipe.builtin" in listed
