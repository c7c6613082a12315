"""The documented ways to load plugins work under a real ``uvicorn app:app`` process, on asyncio and uvloop.

Users load plugins at import (``asyncio.run(manager.load_plugins())``: a throwaway loop), or leave
``plugin_paths`` to the pipeline. Sandboxed helpers must end up on the loop that serves, whichever loop loaded
them, and a shutdown must log no error about loops; ``plugin_paths`` that nobody loaded are loaded at lifespan
startup (or at the first request with ``--lifespan off``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests._process import free_port, start_until_ready, stop

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

STAMP = '''
from covet_pipe import MiddlewarePlugin

class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "1.0.0"
    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "1")

def create_plugin(config):
    return Stamp()
'''

GUARD = '''
from covet_pipe import MiddlewareAction, MiddlewarePlugin

class Guard(MiddlewarePlugin):
    name = "guard"
    version = "1.0.0"
    dependencies = ["stamp"]
    def process_request(self, request, ctx):
        if request.path.startswith("/admin") and request.headers.get("x-key") != "sesame":
            return MiddlewareAction.reject(401, "key required")
        request.headers.set("x-guarded", "yes")

def create_plugin(config):
    return Guard()
'''

APP = '''
from covet_pipe import PluginConfig, PluginManager, wrap

async def hello(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({{"type": message["type"] + ".complete"}})
            if message["type"] == "lifespan.shutdown":
                return
    headers = dict(scope["headers"])
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"hello " + headers.get(b"x-guarded", b"-")}})

manager = PluginManager(PluginConfig(plugin_paths=["./my_plugins"]{extra}))
app = wrap(hello, manager)
{load}
'''

LOAD_AT_IMPORT = '''
import asyncio
report = asyncio.run(manager.load_plugins())
print(report.loaded, report.failed, flush=True)
'''


def _project(tmp_path: Path, load: str, extra: str = "") -> Path:
    plugins = tmp_path / "my_plugins"
    plugins.mkdir()
    (plugins / "stamp.py").write_text(STAMP)
    (plugins / "guard.py").write_text(GUARD)
    (plugins / "guard.covet-plugin.toml").write_text('sandbox = true\n')
    (tmp_path / "app.py").write_text(textwrap.dedent(APP.format(extra=extra, load=load)))
    return tmp_path


def _uvicorn(folder: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = start_until_ready(
        [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port), *args],
        port, folder, folder / "server.log", env={**os.environ, "PYTHONPATH": str(folder)})
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen, folder: Path) -> str:
    stop(proc)
    return (folder / "server.log").read_text()


def _check_served(url: str) -> None:
    r = httpx.get(url + "/")
    assert (r.status_code, r.text, r.headers.get("x-stamp")) == (200, "hello yes", "1"), r.text
    assert httpx.get(url + "/admin").status_code == 401
    assert httpx.get(url + "/admin", headers={"x-key": "sesame"}).status_code == 200
    health = httpx.get(url + "/")  # the helper keeps serving after the first calls
    assert health.status_code == 200


def _clean_log(out: str) -> None:
    for bad in ("different loop", "Traceback", "ERROR", "no helper is running", "Event loop is closed"):
        assert bad not in out, out


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loaded_at_import_with_asyncio_run_serves_on_the_server_loop(tmp_path, loop):
    folder = _project(tmp_path, LOAD_AT_IMPORT)
    proc, url = _uvicorn(folder, "--loop", loop)
    try:
        _check_served(url)
    finally:
        out = _stop(proc, folder)
    assert "['stamp', 'guard'] {}" in out or "['guard', 'stamp'] {}" in out, out
    _clean_log(out)


@pytest.mark.parametrize("lifespan", ["on", "off"])
def test_plugin_paths_nobody_loaded_load_at_startup(tmp_path, lifespan):
    folder = _project(tmp_path, "", extra=", hot_reload=True, reload_on_change=True")
    proc, url = _uvicorn(folder, "--lifespan", lifespan)
    try:
        _check_served(url)
        # the watcher is on: an edit of the in-process plugin serves its new version
        plugin = folder / "my_plugins" / "stamp.py"
        plugin.write_text(STAMP.replace('"x-stamp", "1"', '"x-stamp", "2"').replace('"1.0.0"', '"1.0.1"'))
        deadline = time.monotonic() + 15
        while httpx.get(url + "/").headers.get("x-stamp") != "2":
            assert time.monotonic() < deadline, "the edited plugin did not serve within 15 s"
            time.sleep(0.1)
        assert httpx.get(url + "/admin").status_code == 401
    finally:
        out = _stop(proc, folder)
    if lifespan == "on":
        _clean_log(out)
