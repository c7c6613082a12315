"""Plugins as packages, installed into a fresh venv beside covet-pipe's wheel and used from outside the repo.

``covet-pipe serve`` discovers the installed plugin packages (entry points) without ``--plugins``, in one
process or several (``--no-entry-points`` turns that off).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests._dist import STEP
from tests._plugin_dists import installed, plugin_wheel
from tests._process import free_port, start_until_ready, stop

# the session fixtures (a build of covet-pipe, its installs) run in the first test's setup
pytestmark = pytest.mark.timeout(4 * STEP)

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})
'''


def cli(venv: Path, *words: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "covet-pipe"), *words], cwd=cwd, capture_output=True, text=True,
                          timeout=STEP, stdin=subprocess.DEVNULL)


def pip_install(venv: Path, wheel: Path, *options: str) -> None:
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *options, str(wheel)],
                          capture_output=True, text=True, timeout=STEP, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr


def served(venv: Path, folder: Path, *options: str, requests: int = 1) -> tuple[list[httpx.Response], str]:
    """Serve app:app from *folder* with the venv's covet-pipe, GET / *requests* times (new connections)."""
    (folder / "app.py").write_text(APP)
    port = free_port()
    log = folder / f"serve-{port}.log"
    proc = start_until_ready([str(venv / "bin" / "covet-pipe"), "serve", "app:app", "--port", str(port), *options],
                             port, folder, log)
    try:
        answers = [httpx.get(f"http://127.0.0.1:{port}/", timeout=10) for _ in range(requests)]
    finally:
        code = stop(proc)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    return answers, output


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_discovers_an_installed_plugin_package_without_plugins_flag(
        plugin_venv: Path, tmp_path: Path, outside: Path, workers: str) -> None:
    wheel = plugin_wheel(tmp_path, plugin_venv / "bin" / "python", "stamp", "1.2.0")
    with installed(plugin_venv, "covet-pipe-stamp"):
        pip_install(plugin_venv, wheel)
        answers, output = served(plugin_venv, outside, "--workers", workers, "--strict", requests=4)
        assert [(r.status_code, r.text, r.headers.get("x-stamp")) for r in answers] == [(200, "hello", "1.2.0")] * 4
        assert "stamp" in output
        # --no-entry-points: the installed package is not loaded
        answers, _ = served(plugin_venv, outside, "--workers", workers, "--no-entry-points")
        assert (answers[0].status_code, answers[0].headers.get("x-stamp")) == (200, None)
