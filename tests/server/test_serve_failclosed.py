"""`covet-pipe serve` with a guard that fails to load: 503 in its place, 200 once the fix is dropped in.

Each case is a real `covet-pipe serve --reload --plugins DIR` process and a real client: the C
API-key example (built with `covet-pipe build`, and broken on purpose with the system compiler)
or a Python guard. With `--strict` the same folder makes serve exit non-zero, naming every reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

import covet_pipe
from tests.server.test_serve_cli import EXE, _free_port, _run_until_ready, _stop

ROOT = Path(__file__).resolve().parents[2]
API_KEY_C = ROOT / "native_abi" / "examples" / "api_key" / "api_key.c"
KEY = {"x-api-key": "sekret"}
#: every case's guard reads its key from its manifest
MANIFEST = '[config]\nkey = "sekret"\n'

PY_GUARD = textwrap.dedent('''
    from covet_pipe import MiddlewareAction, MiddlewarePlugin

    class ApiKey(MiddlewarePlugin):
        name = "api_key"
        version = "1.0.0"

        def initialize(self, ctx):
            self.key = ctx.config["key"]

        def process_request(self, request, ctx):
            if request.headers.get("x-api-key") != self.key:
                return MiddlewareAction.reject(401, "missing or wrong API key")

    plugin = ApiKey()
''')

APP = textwrap.dedent('''
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the app"})
''')


def _cc(out: Path, *flags: str) -> Path:
    """Build the C API-key example with the system compiler and *flags* (to break it on purpose)."""
    cmd = ["cc", "-shared", "-fPIC", "-O2", "-I", covet_pipe.get_include(), *flags, str(API_KEY_C), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stderr}"
    return out


def _good_library(tmp: Path) -> bytes:
    proc = subprocess.run([str(EXE), "build", str(API_KEY_C), "-o", str(tmp / "good.so")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return (tmp / "good.so").read_bytes()


def _wrong_abi(tmp: Path) -> bytes:
    # the header's own macros, with the major of a covet-pipe that does not exist yet
    header = tmp / "abi2.h"
    header.write_text('#include "covet_plugin.h"\n#undef COVET_ABI_MAJOR\n#define COVET_ABI_MAJOR 2\n')
    return _cc(tmp / "abi2.so", "-include", str(header)).read_bytes()


def _missing_symbol(tmp: Path) -> bytes:
    return _cc(tmp / "nosym.so", "-Dcovet_plugin_entry_v1=covet_plugin_entry_v0").read_bytes()


#: case -> (file name, its broken content, its manifest, the fixed content, the fixed manifest, the reason)
Case = tuple[str, Callable[[Path], bytes], str, Callable[[Path], bytes], str, str]
CASES: dict[str, Case] = {
    "wrong-abi": ("api_key.so", _wrong_abi, MANIFEST, _good_library, MANIFEST,
                  "was built for covet ABI 2.1; this covet-pipe provides ABI 1.1; rebuild it"),
    "missing-symbol": ("api_key.so", _missing_symbol, MANIFEST, _good_library, MANIFEST,
                       "exports neither covet_plugin_entry_v1 (a C plugin) nor PyInit_api_key"),
    "not-elf": ("api_key.so", lambda tmp: b"#!/bin/sh\necho not a library\n", MANIFEST, _good_library, MANIFEST,
                "cannot be loaded: it is not an ELF file"),
    "bad-manifest": ("api_key.so", _good_library, '[config]\nkey = "sekret\n', _good_library, MANIFEST,
                     "api_key.covet-plugin.toml is not valid TOML"),
    "import-error": ("api_key.py", lambda tmp: b"import covet_pipe_no_such_module\n", MANIFEST,
                     lambda tmp: PY_GUARD.encode(), MANIFEST,
                     "importing it raised ModuleNotFoundError: No module named 'covet_pipe_no_such_module'"),
    "syntax-error": ("api_key.py", lambda tmp: b"def api_key(:\n", MANIFEST, lambda tmp: PY_GUARD.encode(),
                     MANIFEST, "api_key.py: syntax error at line 1"),
}


def _drop_in(path: Path, data: bytes) -> None:
    """Write *data* to *path* in one step, as a deploy does (the watcher never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _folder(tmp_path: Path, case: Case) -> Path:
    name, broken, manifest, _, _, _ = case
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / name).write_bytes(broken(tmp_path))
    (plugins / "api_key.covet-plugin.toml").write_text(manifest)
    (tmp_path / "plainapp.py").write_text(APP)
    return plugins


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_guard_that_fails_to_load_answers_503_until_its_fix_is_dropped_in(tmp_path: Path, case: Case) -> None:
    name, _, _, fixed, fixed_manifest, reason = case
    plugins = _folder(tmp_path, case)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/private"
    log = tmp_path / "log"
    proc = _run_until_ready([str(EXE), "serve", "plainapp:app", "--port", str(port), "--plugins", str(plugins),
                             "--reload"], port, tmp_path, log)
    try:
        closed = [httpx.get(url, timeout=10), httpx.get(url, headers=KEY, timeout=10)]
        if fixed_manifest != (plugins / "api_key.covet-plugin.toml").read_text():
            _drop_in(plugins / "api_key.covet-plugin.toml", fixed_manifest.encode())
        _drop_in(plugins / name, fixed(tmp_path))
        deadline = time.monotonic() + 20
        while True:
            served = httpx.get(url, headers=KEY, timeout=10)
            if served.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        without_key = httpx.get(url, timeout=10)
    finally:
        code = _stop(proc)
    text = log.read_text()
    assert [r.status_code for r in closed] == [503, 503], text
    assert all("Traceback" not in r.text for r in closed)
    assert (served.status_code, served.text) == (200, "the app"), text
    assert without_key.status_code == 401
    assert code == 0
    # the startup lines: the plugin (a stand-in) and its failure with the reason
    assert f"plugin api_key 0: failed, kind unknown (not loaded), priority 1000, sandboxed no, path " \
           f"{plugins / name}" in text
    assert "plugin api_key failed, 503 in its place on every protocol: could not be loaded: " in text
    assert reason in text
    assert "Traceback" not in text


def test_serve_strict_exits_naming_every_reason(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (tmp_path / "plainapp.py").write_text(APP)
    for case_name, (name, broken, manifest, _, _, _) in CASES.items():
        stem = case_name.replace("-", "_")
        target = plugins / name.replace("api_key", stem)
        target.write_bytes(broken(tmp_path))
        (plugins / f"{stem}.covet-plugin.toml").write_text(manifest)
    proc = subprocess.run([str(EXE), "serve", "plainapp:app", "--port", str(_free_port()), "--plugins",
                           str(plugins), "--strict"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "covet-pipe serve: --strict: PluginConfig(strict=True): refusing to start: 6 plugin(s) failed" in err
    for case_name, (*_, reason) in CASES.items():
        assert reason.replace("api_key", case_name.replace("-", "_")) in err, (case_name, err)
    assert "Traceback" not in err


def test_serve_fail_open_serves_without_the_broken_guard(tmp_path: Path) -> None:
    plugins = _folder(tmp_path, CASES["not-elf"])
    port = _free_port()
    proc = _run_until_ready([str(EXE), "serve", "plainapp:app", "--port", str(port), "--plugins", str(plugins),
                             "--fail-open", "api_key"], port, tmp_path, tmp_path / "log")
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/private", timeout=10)
    finally:
        _stop(proc)
    assert (r.status_code, r.text) == (200, "the app")
    assert "plugin api_key failed, the others serve without it (failure_policy open)" in (tmp_path / "log").read_text()


def test_python_m_covet_pipe_version() -> None:
    proc = subprocess.run([sys.executable, "-m", "covet_pipe", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.strip() == (f"covet-pipe {covet_pipe.__version__} (native ABI 1.1, Python "
                                   f"{sys.version.split()[0]})")


def test_serve_strict_with_workers_exits_instead_of_restarting_them(tmp_path: Path) -> None:
    plugins = _folder(tmp_path, CASES["syntax-error"])
    proc = subprocess.run([str(EXE), "serve", "plainapp:app", "--port", str(_free_port()), "--plugins",
                           str(plugins), "--strict", "--workers", "2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to start: 1 plugin(s) failed" in proc.stderr
    assert "api_key.py: syntax error at line 1" in proc.stderr
    assert "refused to start (strict)" in proc.stderr
    assert "Traceback" not in proc.stderr
