"""`covet-pipe serve --workers N` as a real process tree; graceful shutdown of an in-flight request."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import WAIT, exchange

APP = textwrap.dedent('''
    import asyncio, json, os

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/slow":
            await asyncio.sleep(1.5)
        body = json.dumps({"pid": os.getpid(), "path": scope["path"]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    (tmp_path / "wapp.py").write_text(APP)
    port = _free_port()
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "wapp:app", "--app-dir", str(tmp_path),
           "--port", str(port), "--log-level", "warning", *extra]
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()}")
        try:
            exchange(port, b"GET /ready HTTP/1.1\r\nHost: t\r\n\r\n", timeout=1)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not answer within 20 s")


def _pid_of(port: int) -> int:
    (r,), _ = exchange(port, b"GET /who HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    return int(json.loads(r.body)["pid"])


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(WAIT + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_two_workers_serve_restart_and_stop(tmp_path: Path) -> None:
    proc, port = _start(tmp_path, "--workers", "2", "--shutdown-timeout", "3")
    try:
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        seen = {_pid_of(port) for _ in range(60)}
        assert seen <= workers and seen, (seen, workers)
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        replaced: set[int] = set()
        while time.monotonic() < deadline:
            now = _children(proc.pid)
            if victim not in now and len(now) == 2:
                replaced = now - workers
                break
            time.sleep(0.1)
        assert len(replaced) == 1, "the killed worker was not replaced"
        new = next(iter(replaced))
        deadline = time.monotonic() + 15
        served_by_new = False
        while time.monotonic() < deadline and not served_by_new:
            try:
                served_by_new = _pid_of(port) == new
            except OSError:
                time.sleep(0.1)
        assert served_by_new, "the new worker does not serve"
    finally:
        code = _stop(proc)
    assert code == 0
    for pid in workers | replaced:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


@pytest.mark.parametrize("workers", ["1", "2"], ids=["one-process", "two-workers"])
def test_sigterm_lets_an_in_flight_request_finish(tmp_path: Path, workers: str) -> None:
    proc, port = _start(tmp_path, "--workers", workers, "--shutdown-timeout", "10")
    result: list[Any] = []

    def slow() -> None:
        result.append(exchange(port, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", timeout=WAIT))

    t = threading.Thread(target=slow)
    try:
        t.start()
        time.sleep(0.5)                     # the request is in the app's sleep
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        t.join(WAIT)
        code = proc.wait(WAIT + 10)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (replies, closed), = result
    assert [r.status for r in replies] == [200]
    assert json.loads(replies[0].body)["path"] == "/slow"
    assert closed, "after shutdown began the connection is not kept alive"
    assert code == 0 and took < 10
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
