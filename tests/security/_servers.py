"""Real servers for the security tests: `covet-pipe serve` as a process, uvicorn in a thread, a prefix-stripping proxy."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from tests.conftest import Served
from tests.server.conftest import WAIT, Reply, exchange

ROOT = Path(__file__).resolve().parents[2]
EXE = Path(sys.executable).parent / "covet-pipe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """`covet-pipe serve <app> <args>` on a free port; its output in a file."""

    def __init__(self, app: str, *args: str, log: Path) -> None:
        self.port = free_port()
        self.log = log
        cmd = [str(EXE), "serve", app, "--port", str(self.port), "--app-dir", str(ROOT), *args]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"covet-pipe serve exited {self.proc.returncode}: {log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"covet-pipe serve: no answer within 30 s: {log.read_text()}")
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextlib.contextmanager
def covet_serve(app: str, *args: str, log: Path) -> Iterator[Process]:
    p = Process(app, *args, log=log)
    try:
        yield p
    finally:
        p.stop()


@contextlib.contextmanager
def uvicorn_serve(app: Any, **options: Any) -> Iterator[Served]:
    with Served(app, **options) as s:
        yield s


def get(port: int, target: str | bytes, headers: list[tuple[str, str]] | None = None,
        method: str = "GET") -> Reply:
    """One raw request (the target exactly as given: no client-side normalisation) and its reply."""
    raw = target if isinstance(target, bytes) else target.encode("latin-1")
    head = [f"{method} ".encode() + raw + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [f"{k}: {v}".encode("latin-1") for k, v in headers or []]
    (reply,), _ = exchange(port, b"\r\n".join(head) + b"\r\n\r\n")
    return reply


def body(reply: Reply) -> Any:
    return json.loads(reply.body)


class StripPrefixProxy:
    """A reverse proxy on 127.0.0.1 that forwards ``/api/x`` as ``/x`` (one request a connection)."""

    def __init__(self, upstream: int, prefix: str = "/api") -> None:
        self.upstream = upstream
        self.prefix = prefix.encode()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            with client:
                client.settimeout(WAIT)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                line, _, rest = head.partition(b"\r\n")
                method, target, version = line.split(b" ", 2)
                if target == self.prefix or target.startswith(self.prefix + b"/"):
                    target = target[len(self.prefix):] or b"/"
                else:
                    client.sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    continue
                with socket.create_connection(("127.0.0.1", self.upstream), timeout=WAIT) as up:
                    up.sendall(b" ".join((method, target, version)) + b"\r\n" + rest)
                    while chunk := up.recv(65536):
                        client.sendall(chunk)

    def __enter__(self) -> "StripPrefixProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping = True
        self.thread.join(WAIT)
        self.sock.close()
