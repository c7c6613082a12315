"""A plugin folder behind a real ``covet-pipe serve`` on 127.0.0.1, a client for it, and edit-then-wait-for-reload."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = ["Reply", "ServedPlugins", "ServeFailed", "start_serve"]

#: the app behind the plugins when the test names none: 200 "ok", and the request headers it saw as x-app-saw-*
ECHO_APP = '''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    saw = [(b"x-app-saw-" + k, v) for k, v in scope["headers"] if not k.startswith(b"x-app-saw-")]
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), *saw]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


class ServeFailed(Exception):
    """``covet-pipe serve`` did not start, or a reload did not come; the message holds the server's log."""


@dataclass
class Reply:
    """What the client got: status, headers (lower-case names) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServedPlugins:
    """A running ``covet-pipe serve`` (its own process and session), with a client for it."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        #: the server's output (stdout and stderr)
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str = "/", *, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers=headers)

    def request(self, method: str, path: str = "/", *, headers: dict[str, str] | None = None,
                body: bytes = b"", timeout: float = 10) -> Reply:
        """One request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def edit(self, file: str | Path, text: str, *, until: Callable[[Reply], bool], path: str = "/",
             timeout: float = 30) -> Reply:
        """Rewrite *file* (a plugin the server watches: ``reload=True``) and wait until a reply satisfies *until*.

        :returns: the first reply that did.
        :raises ServeFailed: none did within *timeout* s (the message holds the last reply and the log).
        """
        file = Path(file)
        before = file.stat().st_mtime_ns if file.exists() else 0
        file.write_text(text, encoding="utf-8")
        if file.stat().st_mtime_ns == before:     # a coarse clock: make the change visible to the watcher
            os.utime(file, ns=(before + 1_000_000, before + 1_000_000))
        deadline = time.monotonic() + timeout
        last: Reply | str = "no reply"
        while time.monotonic() < deadline:
            try:
                last = self.get(path)
                if until(last):
                    return last
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
        raise ServeFailed(f"covet_server: after editing {file}, no reply to GET {path} passed the check within "
                          f"{timeout} s (last: {last}); was it served with reload=True? server log:\n"
                          f"{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as an operator would; SIGKILL to its session after *timeout* s. The exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:      # gone in the meantime
                pass
            return self.proc.wait()


def start_serve(workdir: Path, plugins: Iterable[str | Path], *, app: str | None = None, reload: bool = False,
                args: Iterable[str] = (), timeout: float = 60) -> ServedPlugins:
    """Start ``covet-pipe serve APP --plugins DIR ... --strict`` on a free 127.0.0.1 port; return once it answers.

    :param app: ``module:attribute`` importable from *workdir*; None: an app answering 200 ``ok``
        (``covet_echo_app:app``) with the request headers it saw as ``x-app-saw-NAME``.
    :raises ServeFailed: it exited or did not answer within *timeout* s (the message holds its log).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if app is None:
        (workdir / "covet_echo_app.py").write_text(ECHO_APP, encoding="utf-8")
        app = "covet_echo_app:app"
    port = _free_port()
    cmd = [sys.executable, "-m", "covet_pipe", "serve", app, "--app-dir", str(workdir), "--host", "127.0.0.1",
           "--port", str(port), "--strict"]
    for folder in plugins:
        cmd += ["--plugins", str(Path(folder).resolve())]
    if reload:
        cmd.append("--reload")
    cmd += list(args)
    log = workdir / f"serve-{port}.log"
    with open(log, "wb") as out:        # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    served = ServedPlugins(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeFailed(f"covet_server: covet-pipe serve exited {proc.returncode} before serving "
                              f"({' '.join(cmd[3:])}):\n{served.log_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return served
        except OSError:
            time.sleep(0.1)
    served.stop()
    raise ServeFailed(f"covet_server: nothing answered on 127.0.0.1:{port} within {timeout} s:\n{served.log_text()}")
