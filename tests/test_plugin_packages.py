"""Plugins as packages, installed into a fresh venv beside covet-pipe's wheel and used from outside the repo.

``covet-pipe serve`` discovers the installed plugin packages (entry points) without ``--plugins``, in one
process or several (``--no-entry-points`` turns that off); ``covet-pipe install`` enables a package only
when the covet-pipe and ABI ranges it declares fit (and discovery refuses one that does not, however it
was installed); ``--pin`` loads a package only with the content hash ``covet-pipe plugins --hash`` printed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests._dist import COMPILE, STEP, run
from tests._plugin_dists import installed, plugin_wheel
from tests._process import free_port, start_until_ready, stop

# the session fixtures (a build of covet-pipe, its installs) run in the first test's setup
pytestmark = pytest.mark.timeout(COMPILE + 3 * STEP)

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
    wheel = plugin_wheel(tmp_path, "stamp", "1.2.0")
    with installed(plugin_venv, "covet-pipe-stamp"):
        pip_install(plugin_venv, wheel)
        answers, output = served(plugin_venv, outside, "--workers", workers, "--strict", requests=4)
        assert [(r.status_code, r.text, r.headers.get("x-stamp")) for r in answers] == [(200, "hello", "1.2.0")] * 4
        assert "stamp" in output
        # --no-entry-points: the installed package is not loaded
        answers, _ = served(plugin_venv, outside, "--workers", workers, "--no-entry-points")
        assert (answers[0].status_code, answers[0].headers.get("x-stamp")) == (200, None)


def test_install_enables_only_what_fits_and_discovery_refuses_the_rest(
        plugin_venv: Path, tmp_path: Path, outside: Path) -> None:
    py = plugin_venv / "bin" / "python"
    index = tmp_path / "wheels"     # a local folder index: pip install --no-index --find-links DIR
    plugin_wheel(tmp_path, "fits", requires="covet-pipe>=0.1,<1", abi=">=1.0,<2")
    plugin_wheel(tmp_path, "oldabi", abi=">=2,<3")
    plugin_wheel(tmp_path, "future", requires="covet-pipe>=99")
    abi = subprocess.run([str(py), "-c", "from covet_pipe._core import ABI_MAJOR, ABI_MINOR; "
                          "print(f'{ABI_MAJOR}.{ABI_MINOR}')"], capture_output=True, text=True).stdout.strip()
    with installed(plugin_venv, "covet-pipe-fits", "covet-pipe-oldabi", "covet-pipe-future", "covet-pipe-plain"):
        ok = cli(plugin_venv, "install", "covet-pipe-fits", "--no-index", "--find-links", str(index), cwd=outside)
        assert ok.returncode == 0, ok.stderr
        assert "installed covet-pipe-fits 1.0.0 (plugins: fits)" in ok.stdout
        assert "covet-pipe serve loads it" in ok.stdout
        refused = cli(plugin_venv, "install", "covet-pipe-oldabi", "--no-index", "--find-links", str(index), cwd=outside)
        assert refused.returncode == 1, refused
        assert "covet-pipe-oldabi 1.0.0 is installed but not enabled" in refused.stderr
        assert f"built for the native ABI >=2,<3, but this covet-pipe has ABI {abi}" in refused.stderr
        assert "pip uninstall covet-pipe-oldabi" in refused.stderr
        # pip is held to the running covet-pipe: a package that wants another one is not installed at all
        kept = cli(plugin_venv, "install", "covet-pipe-future", "--no-index", "--find-links", str(index), cwd=outside)
        assert kept.returncode == 1 and "nothing was enabled" in kept.stderr, kept
        listed = subprocess.run([str(py), "-m", "pip", "show", "covet-pipe-future"], capture_output=True, text=True)
        assert listed.returncode != 0
        # ... and one installed past pip's check (--no-deps) is refused by the check after it
        forced = cli(plugin_venv, "install", "covet-pipe-future", "--no-deps", "--no-index", "--find-links",
                     str(index), cwd=outside)
        assert forced.returncode == 1, forced
        assert "covet-pipe-future 1.0.0 requires covet-pipe>=99, but this is covet-pipe 0.1.0" in forced.stderr

        # a package without a covet_pipe.plugins entry point is no plugin package: said so, exit 1
        plain = tmp_path / "plain"
        (plain / "covet_pipe_plain").mkdir(parents=True)
        (plain / "covet_pipe_plain" / "__init__.py").write_text("")
        (plain / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = '
                                              '"setuptools.build_meta"\n[project]\nname = "covet-pipe-plain"\n'
                                              'version = "1.0"\n')
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(index),
             str(plain)], cwd=tmp_path)
        notplugin = cli(plugin_venv, "install", "covet-pipe-plain", "--no-index", "--find-links", str(index),
                        cwd=outside)
        assert notplugin.returncode == 1 and "provides no 'covet_pipe.plugins' entry point" in notplugin.stderr

        table = cli(plugin_venv, "plugins", cwd=outside).stdout.splitlines()
        assert table[0].split() == ["NAME", "TARGET", "PACKAGE", "VERSION", "REQUIRES", "ABI", "COMPATIBLE"]
        rows = {line.split()[0]: line.split() for line in table[1:4]}
        assert rows["fits"][2:] == ["covet-pipe-fits", "1.0.0", "covet-pipe<1,>=0.1", ">=1.0,<2", "yes"]
        assert rows["oldabi"][2:] == ["covet-pipe-oldabi", "1.0.0", "covet-pipe>=0.1", ">=2,<3", "NO"]
        assert rows["future"][2:] == ["covet-pipe-future", "1.0.0", "covet-pipe>=99", "-", "NO"]
        assert cli(plugin_venv, "plugins", "--check", cwd=outside).returncode == 1

        # serve loads the one that fits; the others are refused before their code runs, and said so
        answers, output = served(plugin_venv, outside)
        assert (answers[0].status_code, answers[0].headers.get("x-fits")) == (200, "1.0.0")
        assert answers[0].headers.get("x-oldabi") is None and answers[0].headers.get("x-future") is None
        assert "entry point oldabi = covet_pipe_oldabi:Oldabi: not loaded: covet-pipe-oldabi 1.0.0 is built for " \
               "the native ABI >=2,<3" in output
        assert "covet-pipe-future 1.0.0 requires covet-pipe>=99" in output
        strict = subprocess.run([str(plugin_venv / "bin" / "covet-pipe"), "serve", "app:app", "--port",
                                 str(free_port()), "--strict"], cwd=outside, capture_output=True, text=True,
                                timeout=STEP)
        assert strict.returncode == 1 and "is built for the native ABI >=2,<3" in strict.stderr, strict


def test_a_pinned_package_loads_only_with_its_hash(plugin_venv: Path, tmp_path: Path, outside: Path) -> None:
    wheel = plugin_wheel(tmp_path, "pinned", "2.0.0")
    plugins = outside / "plugins"
    plugins.mkdir()
    (plugins / "other.py").write_text(
        "from covet_pipe import MiddlewarePlugin\n\nclass Other(MiddlewarePlugin):\n    name = 'other'\n    version = '1.0'\n\n"
        "    def process_response(self, response, ctx):\n        response.headers.set('x-other', 'yes')\n\n"
        "plugin = Other()\n")
    with installed(plugin_venv, "covet-pipe-pinned"):
        pip_install(plugin_venv, wheel)
        table = cli(plugin_venv, "plugins", "--hash", cwd=outside).stdout.splitlines()
        assert table[0].split()[-1] == "HASH"
        digest = next(line.split()[-1] for line in table[1:] if line.startswith("pinned "))
        assert digest.startswith("sha256:") and len(digest) == 71
        # the same wheel installed again has the same hash (nothing of the install itself is hashed)
        pip_install(plugin_venv, wheel, "--force-reinstall", "--no-deps")
        again = cli(plugin_venv, "plugins", "--hash", cwd=outside).stdout
        assert digest in again

        answers, _ = served(plugin_venv, outside, "--plugins", "plugins", "--pin", f"covet-pipe-pinned={digest}")
        assert answers[0].headers.get("x-pinned") == "2.0.0" and answers[0].headers.get("x-other") == "yes"

        # the installed package changes under the pin: refused before its code runs; pinned, the operator relies
        # on it, so it fails closed as a plugin file does (503 in its place) ...
        init = next((plugin_venv / "lib").glob("python3.*/site-packages/covet_pipe_pinned/__init__.py"))
        init.write_text(init.read_text().replace('"2.0.0")', '"evil")'))
        answers, output = served(plugin_venv, outside, "--plugins", "plugins", "--pin", f"pinned={digest}")
        assert (answers[0].status_code, answers[0].headers.get("x-pinned")) == (503, None)
        # ... or, with its failure policy open, the rest serves without it
        opened, _ = served(plugin_venv, outside, "--plugins", "plugins", "--pin", f"pinned={digest}",
                           "--fail-open", "pinned")
        assert (opened[0].status_code, opened[0].headers.get("x-pinned"), opened[0].headers.get("x-other")) \
            == (200, None, "yes")
        changed = next(line.split()[-1] for line in
                       cli(plugin_venv, "plugins", "--hash", cwd=outside).stdout.splitlines() if line.startswith("pinned "))
        assert changed != digest
        assert (f"its content hash is {changed}, but plugin_hashes pins 'pinned' to {digest}; it was not loaded"
                in output), output
        assert f"--pin pinned={changed}" in output

        bad = cli(plugin_venv, "serve", "app:app", "--pin", "pinned=md5:abc", cwd=outside)
        assert bad.returncode == 2 and "--pin pinned=md5:abc: expected NAME=sha256:HEX" in bad.stderr
