"""`covet-pipe list | health | reload` against a real `covet-pipe serve --admin`, all as processes.

The server runs on free 127.0.0.1 ports with a plugin that stamps its version and the worker's pid
on each response; the commands run as a user types them. The right token lists, checks and
reloads (what is served changes); a wrong token exits 4, no token 2, no server 3, an unknown plugin
or a failed reload 1 (and the old version keeps serving). `serve --admin` without a token, or with
a short one, refuses to start.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._process import free_port, start_until_ready, stop

EXE = Path(sys.executable).parent / "covet-pipe"
TOKEN = "cli-admin-test-token-0123456789abcdef"
#: seconds for one command: generous for a loaded machine, never a speed check
STEP = 90

PLUGIN = """\
import os
from covet_pipe import MiddlewarePlugin

class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "{version}"

    def process_request(self, request, ctx):   # counted in the plugin's calls
        return None

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "{version}:%d" % os.getpid())

plugin = Stamp()
"""

APP = """\
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})
"""


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("COVET_PIPE_ADMIN")}
    out["PATH"] = f"{Path(sys.executable).parent}:{out['PATH']}"
    out.update(extra)
    return out


def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=STEP, env=env(**extra),
                          stdin=subprocess.DEVNULL)


def write_plugin(folder: Path, version: str) -> None:
    (folder / "plugins" / "stamp.py").write_text(PLUGIN.format(version=version))


def stamp(port: int) -> str:
    """The x-stamp of one GET on a new connection (so SO_REUSEPORT may pick any worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read() == b"hello"
        return answer.getheader("x-stamp") or ""
    finally:
        conn.close()


class Server:
    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.port = free_port()
        self.admin = free_port()
        self.url = f"http://127.0.0.1:{self.admin}"
        self.token_file = str(folder / "admin-token")
        cmd = [str(EXE), "serve", "app:app", "--app-dir", str(folder), "--plugins", str(folder / "plugins"),
               "--port", str(self.port), "--admin", f"127.0.0.1:{self.admin}", "--admin-token-file",
               self.token_file, "--workers", str(workers), "--loop", "asyncio", "--shutdown-timeout", "5"]
        self.log = folder / "server.log"
        self.proc = start_until_ready(cmd, self.port, folder, self.log, env=env(), timeout=60)
        self._wait_admin()      # it opens once the app's listener (or every worker) is up

    def _wait_admin(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                socket.create_connection(("127.0.0.1", self.admin), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"no admin port within 60 s:\n{self.log.read_text()}")

    def cli(self, *args: str, token_file: str | None = None) -> subprocess.CompletedProcess[str]:
        return cli(*args, "--url", self.url, "--token-file", token_file or self.token_file)


def make_folder(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "admin-token").write_text(TOKEN + "\n")
    write_plugin(tmp_path, "1.0.0")
    return tmp_path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(make_folder(tmp_path_factory.mktemp("cli-admin")), workers=1)
    try:
        yield s
    finally:
        code = stop(s.proc)
        log = s.log.read_text()
        assert code == 0 and "Traceback" not in log, log


def test_list_shows_the_plugins_in_a_table_and_as_json(server: Server) -> None:
    table = server.cli("list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:5] == ["NAME", "VERSION", "KIND", "STYLE", "STATE"]
    assert [r.split()[:5] for r in rows] == [["stamp", "1.0.0", "middleware", "hook", "active"]]
    as_json = server.cli("list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    plugins: list[dict[str, Any]] = json.loads(as_json.stdout)
    assert [(p["name"], p["version"], p["state"]) for p in plugins] == [("stamp", "1.0.0", "active")]


def test_health_is_ok_and_exits_0(server: Server) -> None:
    proc = server.cli("health")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("status ok")
    assert any(line.split()[:2] == ["stamp", "active"] for line in proc.stdout.splitlines())
    doc = json.loads(server.cli("health", "--json").stdout)
    assert doc["status"] == "ok" and doc["plugins"]["stamp"]["state"] == "active"


def test_url_and_token_from_the_environment(server: Server) -> None:
    proc = cli("list", "--json", COVET_PIPE_ADMIN_URL=server.url, COVET_PIPE_ADMIN_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert [p["name"] for p in json.loads(proc.stdout)] == ["stamp"]


def test_wrong_token_exits_4_and_says_which_file(server: Server, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token-at-all-0123456789\n")
    for command in (["list"], ["health"], ["reload", "stamp"]):
        proc = server.cli(*command, token_file=str(wrong))
        assert proc.returncode == 4, (command, proc.stdout, proc.stderr)
        assert "refused the token (403)" in proc.stderr and "--admin-token-file" in proc.stderr
        assert proc.stdout == ""


def test_no_token_exits_2_and_names_both_ways(server: Server) -> None:
    proc = cli("list", "--url", server.url)
    assert proc.returncode == 2
    assert "no admin token: give --token-file or set COVET_PIPE_ADMIN_TOKEN" in proc.stderr


def test_admin_port_refuses_a_call_without_credentials(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.admin, timeout=30)
    try:
        conn.request("GET", "/_plugins")
        answer = conn.getresponse()
        assert answer.status == 401 and json.loads(answer.read()) == {"error": "unauthorized"}
    finally:
        conn.close()


def test_nothing_listening_exits_3_and_says_what_to_run() -> None:
    port = free_port()
    proc = cli("health", "--url", f"http://127.0.0.1:{port}", COVET_PIPE_ADMIN_TOKEN=TOKEN)
    assert proc.returncode == 3, proc.stderr
    assert f"cannot reach the admin API at http://127.0.0.1:{port}" in proc.stderr
    assert "is `covet-pipe serve --admin ...` running?" in proc.stderr


def test_unknown_plugin_exits_1_with_the_known_names(server: Server) -> None:
    proc = server.cli("reload", "nope")
    assert proc.returncode == 1
    assert "no plugin named 'nope'" in proc.stderr and "stamp" in proc.stderr


def test_reload_swaps_what_is_served_and_a_failed_one_keeps_the_old(server: Server) -> None:
    assert stamp(server.port).startswith("1.0.0:")
    write_plugin(server.folder, "2.0.0")
    proc = server.cli("reload", "stamp")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "reloaded stamp (version 2.0.0)"
    assert stamp(server.port).startswith("2.0.0:")
    (server.folder / "plugins" / "stamp.py").write_text("this is not python(\n")
    failed = server.cli("reload", "stamp")
    assert failed.returncode == 1
    assert "reloading 'stamp' failed" in failed.stderr and "the old version keeps serving" in failed.stderr
    assert stamp(server.port).startswith("2.0.0:")
    write_plugin(server.folder, "1.0.0")
    assert server.cli("reload", "stamp").returncode == 0


def test_serve_admin_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    base = ["serve", "app:app", "--app-dir", str(folder), "--port", str(free_port()),
            "--admin", str(free_port())]
    proc = cli(*base)
    assert proc.returncode == 2
    assert "never served without a token" in proc.stderr
    assert "give --admin-token-file FILE" in proc.stderr and "COVET_PIPE_ADMIN_TOKEN" in proc.stderr
    short = cli(*base, COVET_PIPE_ADMIN_TOKEN="short")
    assert short.returncode == 2 and "shorter than 16 characters" in short.stderr
    missing = cli(*base, "--admin-token-file", str(folder / "no-such-file"))
    assert missing.returncode == 2 and "cannot read the token file" in missing.stderr
    bad = cli(*base[:-1], "127.0.0.1:notaport", COVET_PIPE_ADMIN_TOKEN=TOKEN)
    assert bad.returncode == 2 and "has no port" in bad.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_admin_port_fails_the_start_and_says_which_flag(tmp_path: Path, workers: str) -> None:
    folder = make_folder(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", "app:app", "--app-dir", str(folder), "--port", "0", "--workers", workers,
                   "--admin", f"127.0.0.1:{port}", "--admin-token-file", str(folder / "admin-token"))
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; pick another --admin port" in proc.stderr
    assert "Traceback" not in proc.stderr
