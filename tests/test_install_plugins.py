"""`covet-pipe new --package`, per kind, from an empty folder to a plugin an installed covet-pipe discovers.

new (the installed wheel's own templates) -> its generated test -> the plugin's wheel (a C or Cython one
compiled by its setup.py against the installed covet_plugin.h / .pxd) -> pip install into a fresh venv that
has covet-pipe -> `covet-pipe plugins` lists it, `covet-pipe check NAME` passes, and covet_plugin(entry_point=)
sends a request through it. The fresh venv sees the session's installed covet-pipe wheel (tests/_dist.py)
through a .pth file, so covet-pipe is not built or installed again; the plugin goes into the fresh venv alone.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests._dist import COMPILE, STEP, Dist
from tests._dist import run as _run

pytestmark = pytest.mark.timeout(COMPILE + 3 * STEP)

#: kind -> (what `check` says of it, the files under src/NAME/ besides __init__.py, covet-plugin.toml, py.typed)
KINDS = {
    "python": ("(python)", set()),
    # check names what the entry point loaded: the library's language and ABI
    "c": ("(c, ABI 1.", {"stamp_c.c"}),
    "cython": ("(cython, ABI 1.", {"stamp_cython.pyx"}),
    # the package's plugin is covet_pipe.sandbox.packaged's stand-in; the code in sandboxed/ runs in the helper
    "sandboxed": ("(sandboxed)", {"sandboxed"}),
}
#: what covet_plugin(entry_point=) says the installed plugin is
LOADED_AS = {"python": "python", "c": "native", "cython": "native", "sandboxed": "sandboxed"}

REQUEST = """
from covet_pipe.testing._loaded import load_plugin
p = load_plugin(entry_point="{name}")
sent = p.request("GET", "/")
print(p.kind, sent.status, sent.headers.get("x-{header}"))
p.close()
"""


def _fresh_venv(path: Path, dist: Dist) -> Path:
    """A new venv without pip that sees the wheel venv's site-packages (covet-pipe and its dependencies)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=STEP)
    purelib = sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)})
    wheel_lib = sysconfig.get_path("purelib", vars={"base": str(dist.venvs["wheel"]),
                                                    "platbase": str(dist.venvs["wheel"])})
    Path(purelib, "covet_pipe_wheel.pth").write_text(wheel_lib + "\n")
    return path / "bin" / "python"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_new_package_wheel_installs_and_the_entry_point_is_discovered_and_checked(
        dist: Dist, kind: str, tmp_path: Path) -> None:
    name = f"stamp_{kind}"
    says, sources = KINDS[kind]
    wheel_py = dist.venvs["wheel"] / "bin" / "python"
    _run([str(wheel_py), "-m", "covet_pipe", "new", name, "--kind", kind, "--package"], cwd=tmp_path)
    root = tmp_path / name
    assert {p.name for p in (root / "src" / name).iterdir()} == {"__init__.py", "covet-plugin.toml", "py.typed",
                                                                  *sources}
    tested = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root)
    assert "1 passed" in tested.stdout, tested.stdout
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
          str(tmp_path / "wheels"), str(root)], cwd=tmp_path)
    (wheel,) = (tmp_path / "wheels").glob(f"covet_pipe_{name}-0.1.0-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read(f"covet_pipe_{name}-0.1.0.dist-info/METADATA").decode()
        entry_points = z.read(f"covet_pipe_{name}-0.1.0.dist-info/entry_points.txt").decode()
    assert "Classifier: Framework :: covet-pipe" in metadata
    assert f"[covet_pipe.plugins]\n{name} = {name}:" in entry_points
    if kind == "sandboxed":   # the plugin's code and manifest, as data
        assert {f"{name}/sandboxed/{name}.py", f"{name}/sandboxed/{name}.covet-plugin.toml"} <= names, names
    if kind in ("c", "cython"):      # the library the package's build compiled, named as an extension module
        assert any(n.startswith(f"{name}/{name}.cpython-") and n.endswith(".so") for n in names), names
        assert "-linux" in wheel.name, wheel.name

    fresh = _fresh_venv(tmp_path / "fresh", dist)
    # --no-index: covet-pipe, the one dependency, must be found installed
    _run([str(wheel_py), "-m", "pip", "--python", str(fresh), "install", "-q", "--no-index", str(wheel)], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    listed = _run([str(fresh), "-m", "covet_pipe", "plugins"], cwd=outside).stdout
    row = next(line.split() for line in listed.splitlines() if line.startswith(name + " "))
    assert row[2:4] == [f"covet-pipe-{name.replace('_', '-')}", "0.1.0"], listed
    checked = _run([str(fresh), "-m", "covet_pipe", "check", f"covet-pipe-{name.replace('_', '-')}"], cwd=outside)
    assert f"ok: {name} 0.1.0 {says}" in checked.stdout and "no problems" in checked.stdout, checked.stdout
    sent = _run([str(fresh), "-c", REQUEST.format(name=name, header=name.replace("_", "-"))], cwd=outside)
    assert sent.stdout.split() == [LOADED_AS[kind], "200", "hello"], sent.stdout
