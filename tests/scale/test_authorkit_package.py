"""`covet-pipe new --package`: the distribution builds into a wheel, installs into a fresh venv beside covet-pipe's
own wheel, and its entry point is discovered, checked and served. `make authorkit`: it builds covet-pipe's wheel
from this checkout (the core compiles: minutes on a busy machine) and installs it into a fresh venv.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests._process import free_port, start_until_ready, stop
from tests.test_install import ROOT

#: seconds for one build or install step: the core's compile on a loaded 2-core machine; never a speed check
STEP = 900
pytestmark = pytest.mark.timeout(4 * STEP)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=STEP, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})
'''


def test_new_package_wheel_installs_and_its_entry_point_is_discovered_and_served(tmp_path: Path) -> None:
    # covet-pipe's wheel from this checkout, with the setuptools and Cython of the test venv
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
          str(tmp_path / "covet"), str(ROOT)], cwd=tmp_path)
    (covet_wheel,) = (tmp_path / "covet").glob("covet_pipe-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py, cli = venv / "bin" / "python", venv / "bin" / "covet-pipe"
    _run([str(py), "-m", "pip", "install", "-q", str(covet_wheel)], cwd=tmp_path)
    # the installed covet-pipe's own templates (package data) write the distribution
    _run([str(cli), "new", "greet", "--package"], cwd=tmp_path)
    root = tmp_path / "greet"
    assert (root / "pyproject.toml").is_file() and (root / "src" / "greet" / "covet-plugin.toml").is_file()
    _run([str(py), "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheels"), str(root)], cwd=tmp_path)
    (wheel,) = (tmp_path / "wheels").glob("covet_pipe_greet-0.1.0-*.whl")
    _run([str(py), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    listed_by_cli = _run([str(cli), "plugins"], cwd=outside).stdout.splitlines()
    assert listed_by_cli[0].split() == ["NAME", "TARGET", "PACKAGE", "VERSION", "REQUIRES", "ABI", "COMPATIBLE"]
    assert listed_by_cli[1].split() == ["greet", "greet:Greet", "covet-pipe-greet", "0.1.0", "covet-pipe>=0.1", "-",
                                        "yes"]
    checked = _run([str(cli), "check", "covet-pipe-greet"], cwd=outside)
    assert "ok: greet 0.1.0 (python)" in checked.stdout and "covet-pipe-greet: no problems" in checked.stdout
    (outside / "app.py").write_text(APP)
    # serve discovers (files and entry points) when it is given a plugin folder: an empty one here
    (outside / "plugins").mkdir()
    port = free_port()
    proc = start_until_ready([str(cli), "serve", "app:app", "--plugins", "plugins", "--port", str(port), "--strict"],
                             port, outside,
                             tmp_path / "serve.log")
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert (r.status_code, r.text, r.headers.get("x-greet")) == (200, "hello", "hello")
    finally:
        assert stop(proc) == 0, (tmp_path / "serve.log").read_text()
    listed = subprocess.run([str(py), "-c", "import importlib.metadata as m; print([e.value for e in "
                             "m.entry_points(group='covet_pipe.plugins')])"], capture_output=True, text=True)
    assert listed.stdout.strip() == "['greet:Greet']"
