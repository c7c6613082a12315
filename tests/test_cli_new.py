"""`covet-pipe new`: from an empty folder, each kind scaffolds, builds, checks, passes its own test, and serves.

The whole path as an author walks it, with the real commands: `new` -> (`build`) -> `check` -> the generated
pytest test -> `covet-pipe serve --plugins` on 127.0.0.1 -> httpx sees the plugin's header.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from covet_pipe.cli import main
from tests._process import free_port, start_until_ready, stop

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})
'''


def covet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "covet_pipe", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


#: kind -> (the files `new` writes under NAME/, the file `check` and `serve` look at)
KINDS = {
    "python": (["plugins/demo.py"], "plugins/demo.py"),
    "sandboxed": (["plugins/demo.py", "plugins/demo.covet-plugin.toml"], "plugins/demo.py"),
    "c": (["plugins/demo.c"], "plugins/demo.so"),
    "cython": (["plugins/demo.pyx"], "plugins/demo.so"),
}


def walk(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """new -> (build) -> check -> the generated test -> serve -> a real client sees the plugin's header."""
    files, checked = KINDS[kind]
    root = tmp_path / "demo"
    assert main(["new", "demo", "--kind", kind, "--dir", str(root)]) == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        [*files, "tests/test_demo.py"])
    if kind in ("c", "cython"):
        built = covet("build", files[0], cwd=root)
        assert built.returncode == 0, built.stderr
        assert f"built {Path(checked)}" in built.stdout
    capsys.readouterr()
    assert main(["check", str(root / checked)]) == 0
    out = capsys.readouterr().out
    assert "ok: demo 0.1.0" in out and "problem:" not in out
    if kind == "sandboxed":
        assert "demo.py runs sandboxed; effective policy:" in out
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2 passed" in tested.stdout
    (root / "app.py").write_text(APP)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "covet_pipe", "serve", "app:app", "--plugins", "plugins",
                              "--port", str(port), "--strict"], port, root, tmp_path / "serve.log")
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert (r.status_code, r.text, r.headers.get("x-demo")) == (200, "hello", "hello")
    finally:
        assert stop(proc) == 0, (tmp_path / "serve.log").read_text()


# The cython kind takes as long as the three others together (Cython, then the C compiler): it walks in
# tests/scale/test_authorkit_cython.py (`make authorkit`).
@pytest.mark.parametrize("kind", ["python", "sandboxed", "c"])
def test_new_kind_builds_checks_passes_its_test_and_serves(tmp_path: Path, kind: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    walk(tmp_path, kind, capsys)


def test_new_refuses_a_name_that_is_no_identifier_and_says_what_to_use(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "My-Plugin", "--dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "covet-pipe new: 'My-Plugin' cannot name a plugin" in err and "(e.g. my_plugin)" in err
    assert not (tmp_path / "x").exists()


def test_new_refuses_a_folder_that_holds_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["new", "demo", "--dir", str(tmp_path)]) == 2
    assert "already exists and is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_new_package_passes_its_test_checks_and_builds_a_wheel_with_the_entry_point(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "greet"
    assert main(["new", "greet", "--package", "--dir", str(root)]) == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "README.md", "pyproject.toml", "src/greet/__init__.py", "src/greet/covet-plugin.toml", "src/greet/py.typed",
        "tests/test_greet.py"]
    capsys.readouterr()
    assert main(["check", str(root / "src" / "greet")]) == 0
    assert "ok: greet 0.1.0 (python)" in capsys.readouterr().out
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    # the installed path (a fresh venv, the entry point served) is tests/scale/test_authorkit_package.py
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(root)], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr
    (whl,) = (tmp_path / "dist").glob("covet_pipe_greet-0.1.0-*.whl")
    with zipfile.ZipFile(whl) as z:
        names = set(z.namelist())
        entry_points = z.read("covet_pipe_greet-0.1.0.dist-info/entry_points.txt").decode()
        metadata = z.read("covet_pipe_greet-0.1.0.dist-info/METADATA").decode()
    assert {"greet/__init__.py", "greet/covet-plugin.toml", "greet/py.typed"} <= names
    assert "[covet_pipe.plugins]\ngreet = greet:Greet" in entry_points
    assert "Requires-Dist: covet-pipe>=" in metadata


#: kind -> the files `new --package` writes besides pyproject.toml, README.md, tests/ and src/demo/'s
#: __init__.py, covet-plugin.toml and py.typed
PACKAGE_EXTRA = {
    "python": [],
    "sandboxed": ["src/demo/sandboxed/demo.covet-plugin.toml", "src/demo/sandboxed/demo.py"],
    "c": ["MANIFEST.in", "setup.py", "src/demo/demo.c"],
    "cython": ["MANIFEST.in", "setup.py", "src/demo/demo.pyx"],
}


@pytest.mark.parametrize("kind", sorted(PACKAGE_EXTRA))
def test_new_package_of_each_kind_writes_a_distribution_with_the_classifier(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "demo"
    assert main(["new", "demo", "--kind", kind, "--package", "--dir", str(root)]) == 0
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == sorted(
        ["README.md", "pyproject.toml", "src/demo/__init__.py", "src/demo/covet-plugin.toml", "src/demo/py.typed",
         "tests/test_demo.py", *PACKAGE_EXTRA[kind]])
    pyproject = (root / "pyproject.toml").read_text()
    assert 'classifiers = ["Framework :: covet-pipe"]' in pyproject
    entry = "Demo" if kind == "python" else "create_plugin"
    assert f'[project.entry-points."covet_pipe.plugins"]\ndemo = "demo:{entry}"' in pyproject


# cython's package is built and installed in tests/test_install_plugins.py (a compile too many for here)
@pytest.mark.parametrize("kind", ["sandboxed", "c"])
def test_new_package_of_another_kind_passes_its_test(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "demo"
    assert main(["new", "demo", "--kind", kind, "--package", "--dir", str(root)]) == 0
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=root,
                            capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
