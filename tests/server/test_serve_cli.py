"""`covet-pipe serve` and `covet_pipe.serve(...)` as a new user runs them, as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from covet_pipe.cli import main
from tests.server.conftest import WAIT, exchange

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "covet-pipe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_until_ready(cmd: list[str], port: int, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError(f"no answer on {port} within 20 s: {log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(WAIT + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_example_app_from_the_repository_root(tmp_path: Path) -> None:
    port = _free_port()
    proc = _run_until_ready([str(EXE), "serve", "examples.app:app", "--port", str(port)], port, ROOT,
                            tmp_path / "log")
    try:
        (home,), _ = exchange(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        (private,), _ = exchange(port, b"GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # the example's RESP plugin answers redis-cli on the same port
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        set_out = subprocess.run([*cli, "set", "greeting", "hi"], capture_output=True, timeout=WAIT)
        get_out = subprocess.run([*cli, "get", "greeting"], capture_output=True, timeout=WAIT)
    finally:
        code = _stop(proc)
    assert home.status == 200 and json.loads(home.body) == {"hello": "world", "path": "/"}
    assert home.header("x-request-id")                       # the example's RequestId plugin ran
    assert private.status == 401
    assert set_out.stdout.strip() == b"OK" and get_out.stdout.strip() == b"hi", (set_out, get_out)
    assert code == 0
    assert "Traceback" not in (tmp_path / "log").read_text()


def test_serve_loads_a_plugin_folder(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "stamp.py").write_text(textwrap.dedent('''
        from covet_pipe import MiddlewarePlugin

        class Stamp(MiddlewarePlugin):
            name = "stamp"
            version = "1.0.0"

            def process_response(self, response, ctx):
                response.headers.add("x-stamp", "yes")

        plugin = Stamp()
    '''))
    (tmp_path / "plainapp.py").write_text(textwrap.dedent('''
        async def app(scope, receive, send):
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"plain"})
    '''))
    port = _free_port()
    proc = _run_until_ready([str(EXE), "serve", "plainapp:app", "--port", str(port), "--plugins",
                             str(plugins)], port, tmp_path, tmp_path / "log")
    try:
        (r,), _ = exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    finally:
        _stop(proc)
    assert r.status == 200 and r.body == b"plain" and r.header("x-stamp") == "yes"


def test_serve_from_python(tmp_path: Path) -> None:
    port = _free_port()
    script = textwrap.dedent(f'''
        import covet_pipe

        async def app(scope, receive, send):
            if scope["type"] == "http":
                await send({{"type": "http.response.start", "status": 200, "headers": []}})
                await send({{"type": "http.response.body", "body": b"from python"}})

        covet_pipe.serve(app, covet_pipe.PluginManager(), host="127.0.0.1", port={port}, keepalive_timeout=2)
    ''')
    proc = _run_until_ready([sys.executable, "-c", script], port, tmp_path, tmp_path / "log")
    try:
        (r,), _ = exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    finally:
        code = _stop(proc)
    assert r.body == b"from python" and code == 0


def test_serve_with_a_missing_module_says_what_to_do(capsys: object, tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        code = main(["serve", "no_such_module:app", "--port", "0"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 2
    assert "no module named 'no_such_module'" in err and "--app-dir" in err


def test_serve_with_a_file_path_for_the_app_says_the_command_that_works(capsys: object, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "app.py").write_text("async def app(scope, receive, send):\n    pass\n")
    code = main(["serve", f"{tmp_path}/dir/app.py:app", "--port", "0"])
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 2
    assert err == (f"covet-pipe serve: '{tmp_path}/dir/app.py:app': the app is named by its module, not its file "
                   f"path; run: covet-pipe serve app:app --app-dir {tmp_path}/dir\n")


def test_serve_with_an_app_whose_import_raises_names_the_line_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "crashy.py").write_text("import os\nSETTING = os.environ['COVET_TEST_NO_SUCH_VARIABLE']\n")
    proc = subprocess.run([str(EXE), "serve", "crashy:app", "--port", str(_free_port())], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == (f"covet-pipe serve: 'crashy:app': importing 'crashy' raised KeyError: "
                           f"'COVET_TEST_NO_SUCH_VARIABLE' at {tmp_path}/crashy.py:2; fix the app's module-level "
                           "code (python -c 'import crashy' shows the whole traceback)\n")


def test_serve_with_a_bad_limit_names_it(capsys: object) -> None:
    code = main(["serve", "examples.app:app", "--header-timeout", "0"])
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 2 and "header_timeout" in err


def test_serve_with_the_example_protocol_plugin_folder(tmp_path: Path) -> None:
    """The documented third-party protocol: HTTP, RESP and 'SAY' lines on one port."""
    port = _free_port()
    proc = _run_until_ready([str(EXE), "serve", "examples.app:app", "--port", str(port), "--plugins",
                             "examples/protocol_plugins"], port, ROOT, tmp_path / "log")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"SAY hello\nSAY my secret\n")
            s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(4096):
                out += chunk
        (home,), _ = exchange(port, b"GET /secret HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    finally:
        code = _stop(proc)
    lines = out.decode().splitlines()
    assert lines[0] == "hello" and lines[1].startswith("ERR 403") and "no secrets over line" in lines[1]
    assert home.status == 403 and b"no secrets over http" in home.body     # the same middleware on HTTP
    assert code == 0
    assert "protocols: http11, resp, line_echo" in (tmp_path / "log").read_text()


def test_serve_reload_swaps_an_edited_plugin_in_place(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    source = textwrap.dedent('''
        from covet_pipe import MiddlewarePlugin

        class Stamp(MiddlewarePlugin):
            name = "stamp"
            version = "{v}.0.0"

            def process_response(self, response, ctx):
                response.headers.set("x-stamp", "v{v}")

        plugin = Stamp()
    ''')
    (plugins / "stamp.py").write_text(source.replace("{v}", "1"))
    port = _free_port()
    proc = _run_until_ready([str(EXE), "serve", "examples.app:app", "--port", str(port), "--plugins",
                             str(plugins), "--reload"], port, ROOT, tmp_path / "log")
    try:
        (first,), _ = exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        tmp = plugins / ".stamp.py.tmp"
        tmp.write_text(source.replace("{v}", "2"))
        os.replace(tmp, plugins / "stamp.py")
        deadline = time.monotonic() + WAIT
        while True:
            (r,), _ = exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            if r.header("x-stamp") == "v2" or time.monotonic() > deadline:
                break
            assert r.status == 200 and r.header("x-stamp") == "v1"
            time.sleep(0.05)
    finally:
        code = _stop(proc)
    assert first.header("x-stamp") == "v1"
    assert r.header("x-stamp") == "v2", (tmp_path / "log").read_text()[-2000:]
    assert code == 0
