"""Helpers for tests that run real server processes: a free port, start until it answers, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["free_port", "start_until_ready", "stop"]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_until_ready(cmd: list[str], port: int, cwd: Path, log: Path, *, env: dict[str, str] | None = None,
                      timeout: float = 30) -> subprocess.Popen[Any]:
    """Start *cmd* (its output into *log*) and return once 127.0.0.1:*port* accepts a connection.

    :raises AssertionError: the process exited first, or the port stayed closed for *timeout* s (the
        message holds its output).
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{cmd[0]} exited {proc.returncode} before serving:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise AssertionError(f"{' '.join(cmd)}: nothing answered on port {port} within {timeout} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> int:
    """SIGTERM, as an operator would; SIGKILL (to its session) if it is still there after *timeout* s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # its own session: the server and what it started
        except ProcessLookupError:                # gone in the meantime
            pass
        return proc.wait()
