"""What a user installs: the sdist and the wheel built from it, each in a fresh venv, used from outside the repo.

One session fixture (``dist``, :mod:`tests._dist`) builds both with ``python -m build`` (build isolation, as
a release does: setuptools and Cython are fetched into a throwaway environment): the sdist, then the wheel
from the unpacked sdist while pip installs the sdist into one new venv (which compiles the core a second
time, on the other core); then the wheel goes into another new venv. Every test then runs the installed ``covet-pipe``
from a folder outside the checkout, so nothing can come from the source tree.
"""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
import zipfile
from pathlib import Path

import httpx
import pytest

from tests._dist import COMPILE, ROOT, STEP, Dist
from tests._dist import run as _run
from tests._process import free_port, start_until_ready, stop

# The session fixture (the sdist, two compiles side by side, the wheel's install) runs in the first test's
# setup: its own bounds are STEP and COMPILE, so the suite's 120 s (pyproject.toml) would cut it short.
pytestmark = pytest.mark.timeout(COMPILE + 2 * STEP)


def source_modules() -> set[str]:
    """Every module of the source tree (Python and compiled), by the name it is installed under."""
    names = set()
    for path in [*(ROOT / "covet_pipe").rglob("*.py"), *(ROOT / "covet_pipe").rglob("*.pyx")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.add(".".join(parts))
    return names


def test_wheel_ships_every_module_of_the_source_tree(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        files = set(whl.namelist())
    # covet_pipe/native/loader.py -> covet_pipe.native.loader; covet_pipe/_core.cpython-311-....so -> covet_pipe._core
    shipped = {name.split(".", 1)[0].replace("/", ".").removesuffix(".__init__")
               for name in files if name.endswith((".py", ".so"))}
    missing = source_modules() - shipped
    assert not missing, f"the wheel lacks {sorted(missing)}: list their packages in pyproject.toml"
    assert {"covet_pipe.native", "covet_pipe.builtin", "covet_pipe.sandbox.helper_main"} <= shipped
    # what plugin authors build against, and what type checkers read
    for name in ("covet_pipe/include/covet_plugin.h", "covet_pipe/covet_plugin.pxd", "covet_pipe/py.typed",
                 "covet_pipe/_core.pyi", "covet_pipe/server/resp/_resp.pyi"):
        assert name in files, name
    # the admin dashboard's page and the files it loads (package data)
    for name in ("dashboard.html", "dashboard.js", "dashboard.css", "favicon.svg"):
        assert f"covet_pipe/admin/static/{name}" in files, name


def test_sdist_ships_the_sources_the_build_needs(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        header = tar.getmember(f"{dist.sdist.name.removesuffix('.tar.gz')}/covet_pipe/include/covet_plugin.h")
        assert header.isfile(), "the header must be a file in the sdist, not a link into the checkout"
    for name in ("pyproject.toml", "setup.py", "covet_pipe/_core.pyx", "covet_pipe/server/http11/_http11.pyx",
                 "covet_pipe/server/resp/_resp.pyx", "covet_pipe/server/resp/_resp_direct.pxi",
                 "covet_pipe/native/loader.py", "covet_pipe/builtin/request_id.py", "native_abi/covet_plugin.h",
                 "native_abi/examples/api_key/api_key.c"):
        assert name in names, name


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import covet_pipe
names = ["covet_pipe"]
for info in pkgutil.walk_packages(covet_pipe.__path__, "covet_pipe."):
    # __main__ runs the command line (checked with -m below); testing.fixtures is the pytest plugin, which
    # needs pytest (not a dependency of covet-pipe; tests/test_install_plugins.py imports covet_pipe.testing)
    if info.name not in ("covet_pipe.__main__", "covet_pipe.testing.fixtures"):
        importlib.import_module(info.name)
        names.append(info.name)
print(json.dumps({"file": covet_pipe.__file__, "include": covet_pipe.get_include(), "modules": names}))
"""


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_package_imports_every_module_from_outside_the_repo(dist: Dist, kind: str,
                                                                      tmp_path: Path) -> None:
    venv = dist.venvs[kind]
    found = json.loads(_run([str(venv / "bin" / "python"), "-c", IMPORT_ALL], cwd=tmp_path).stdout)
    assert Path(found["file"]).is_relative_to(venv), found["file"]
    expected = source_modules() - {"covet_pipe.__main__", "covet_pipe.testing.fixtures"}
    assert set(found["modules"]) == expected, set(found["modules"]) ^ expected
    header = Path(found["include"]) / "covet_plugin.h"
    assert header.is_file() and not header.is_symlink() and header.is_relative_to(venv)
    usage = _run([str(venv / "bin" / "python"), "-m", "covet_pipe", "--help"], cwd=tmp_path).stdout
    assert "build" in usage and "serve" in usage


PY_PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class Audit(MiddlewarePlugin):
    name = "audit"
    version = "1.0.0"
    priority = 150

    def process_response(self, response, ctx):
        response.headers.add("x-audit", "python")

plugin = Audit()
'''

BOXED_PLUGIN = '''
import os

from covet_pipe import MiddlewarePlugin

class Boxed(MiddlewarePlugin):
    name = "boxed"
    version = "1.0.0"
    priority = 200

    def process_request(self, request, ctx):
        request.headers.set("x-boxed-saw", request.path)

    def process_response(self, response, ctx):
        response.headers.add("x-boxed-pid", str(os.getpid()))

def create_plugin(config):
    return Boxed()
'''

APP = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    headers = dict(scope["headers"])
    body = b"hello, boxed saw " + headers.get(b"x-boxed-saw", b"nothing")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_covet_pipe_builds_and_serves_native_python_and_sandboxed_plugins(
        dist: Dist, kind: str, tmp_path: Path) -> None:
    venv = dist.venvs[kind]
    exe = str(venv / "bin" / "covet-pipe")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    # the C example as the sdist ships it, built against the installed header only
    with tarfile.open(dist.sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("native_abi/examples/api_key/api_key.c"))
        (tmp_path / "api_key.c").write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    built = _run([exe, "build", "api_key.c", "-o", "plugins/"], cwd=tmp_path)
    assert "built plugins/api_key.so" in built.stdout
    (plugins / "api_key.covet-plugin.toml").write_text('[config]\nkey = "s3cret"\n')
    (plugins / "audit.py").write_text(textwrap.dedent(PY_PLUGIN))
    (plugins / "boxed.py").write_text(textwrap.dedent(BOXED_PLUGIN))
    (plugins / "boxed.covet-plugin.toml").write_text("sandbox = true\n")
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))

    port = free_port()
    log = tmp_path / "serve.log"
    proc = start_until_ready([exe, "serve", "app:app", "--port", str(port), "--plugins", "plugins"], port,
                             tmp_path, log, env={**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"})
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
            denied = client.get("/private")
            served = client.get("/private", headers={"x-api-key": "s3cret"})
    finally:
        code = stop(proc)
    output = log.read_text()
    assert denied.status_code == 401, (denied, denied.text, output)
    assert served.status_code == 200, (served, served.text, output)
    assert served.text == "hello, boxed saw /private"             # the sandboxed request hook ran
    assert served.headers["x-audit"] == "python"
    helper_pid = int(served.headers["x-boxed-pid"])
    assert helper_pid != proc.pid                                  # answered from the helper process
    assert code == 0, output
    assert "Traceback" not in output, output


CYTHON_CHECK = """
import asyncio
from covet_pipe import PluginManager, wrap
from covet_pipe.testing import call

async def hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})

async def main():
    manager = PluginManager()
    await manager.load_plugin_from_path("./path_counter.so")
    app = wrap(hello, manager)
    counts = [(await call(app, "GET", "/a")).headers["x-path-count"] for _ in range(2)]
    await manager.shutdown_all()
    print(",".join(counts))

asyncio.run(main())
"""


def test_installed_covet_pipe_builds_a_cython_plugin_against_the_installed_pxd(dist: Dist, tmp_path: Path) -> None:
    venv = dist.venvs["wheel"]
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "cython>=3.1", "setuptools"], cwd=tmp_path)
    with tarfile.open(dist.sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("examples/path_counter/path_counter.pyx"))
        (tmp_path / "path_counter.pyx").write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    built = _run([str(venv / "bin" / "covet-pipe"), "build", "path_counter.pyx"], cwd=tmp_path)
    assert "built path_counter.so" in built.stdout
    counted = _run([str(venv / "bin" / "python"), "-c", CYTHON_CHECK], cwd=tmp_path)
    assert counted.stdout.strip() == "1,2", counted
