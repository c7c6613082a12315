"""Instructions per request, counted by callgrind: the served path (uvicorn) beside the stepped one.

    python benchmarks/e2e_wrk.py --instructions-only     # this alone, printed, docs untouched

Timings on a shared 2-core machine move with whatever else runs; instruction counts do not. This counts
with ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``):

- served: uvicorn with the e2e suite's command (uvloop, httptools, one process) serving
  ``benchmarks/apps.py:<app>``, answering N keep-alive ``GET /hello`` from a raw-socket client that keeps
  one request in flight on each of C connections (as wrk does), then stopped with SIGTERM;
- stepped: ``benchmarks/profile_step.py`` (the per-layer suite's loop: ``app(scope, receive,
  send).send(None)``, no event loop, no server).

Each is counted at two request counts and subtracted, so start-up and shutdown cancel out: what is left
is instructions per request, user space only (the kernel's share of a served request is not counted;
the syscalls a request makes are the same with and without the plugins). ``benchmarks/e2e_wrk.py`` calls
this after its wrk rounds (unless ``--no-instructions``), for the "e2e" section of docs/benchmarks.md.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))

#: what the wrk runs request, without wrk's own headers (they do not change what the app does)
REQUEST = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: covet-bench\r\n\r\n"
#: (served app, stepped contender, layers) for each row
ROWS = (("bare", "bare-app", 0), ("covet10", "covet-sync", 10), ("starlette10", "starlette-asgi", 10))
#: the two request counts subtracted: served (uvicorn) and stepped (profile_step.py)
REQUESTS = (1000, 3000)
STEPS = (5000, 15000)


def available() -> bool:
    return shutil.which("valgrind") is not None


def _response_end(buf: bytes) -> int:
    """Where the first whole response in *buf* ends (0: not whole yet); a 200 with content-length."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    head = buf[:head_end].lower()
    if not head.startswith(b"http/1.1 200"):
        raise RuntimeError(f"the server answered {buf[:120]!r}")
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
    if m is None:
        raise RuntimeError(f"a response without content-length: {buf[:200]!r}")
    end = head_end + 4 + int(m.group(1))
    return end if len(buf) >= end else 0


def drive(port: int, requests: int, connections: int, timeout: float = 300.0) -> None:
    """Send *requests* keep-alive GETs over *connections* sockets, one in flight on each, and read
    every response; connects as soon as the port accepts (the server may still be starting)."""
    deadline = time.monotonic() + timeout
    socks: list[socket.socket] = []
    while len(socks) < connections:
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing accepted on 127.0.0.1:{port} within {timeout:g} s") from None
            time.sleep(0.2)
    sel = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytes] = {}
    sent = done = 0
    try:
        for s in socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
            if sent < requests:
                s.sendall(REQUEST)
                sent += 1
        while done < requests:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {requests} responses within {timeout:g} s")
            for key, _ in sel.select(5.0):
                s = key.fileobj  # type: ignore[assignment]
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("the server closed a keep-alive connection")
                bufs[s] += data
                while (end := _response_end(bufs[s])):
                    bufs[s] = bufs[s][end:]
                    done += 1
                    if sent < requests:
                        s.sendall(REQUEST)
                        sent += 1
    finally:
        sel.close()
        for s in socks:
            s.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _callgrind(cmd: list[str], folder: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/callgrind.%p", *cmd]


def _collected(log: str) -> int:
    m = re.search(r"Collected\s*:\s*(\d+)", log)
    if m is None:
        raise RuntimeError(f"callgrind printed no total:\n{log[-2000:]}")
    return int(m.group(1))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0"}


def served_total(server_cmd: Callable[[int], list[str]], requests: int, connections: int) -> int:
    """Instructions of one server process that serves *requests* requests, start to exit."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="covet-callgrind-") as folder:
        proc = subprocess.Popen(_callgrind(server_cmd(port), folder), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
        try:
            drive(port, requests, connections)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, log = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, log = proc.communicate()
    # uvicorn shuts down on SIGTERM, then raises the signal again (so the exit is -SIGTERM)
    if proc.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"the server under callgrind exited with {proc.returncode}:\n{log[-2000:]}")
    return _collected(log)


def stepped_total(contender: str, layers: int, iterations: int) -> int:
    """Instructions of benchmarks/profile_step.py running *iterations* requests, start to exit."""
    with tempfile.TemporaryDirectory(prefix="covet-callgrind-") as folder:
        cmd = [sys.executable, os.path.join(HERE, "profile_step.py"), contender, str(layers), str(iterations)]
        done = subprocess.run(_callgrind(cmd, folder), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=_env(), timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} under callgrind exited with {done.returncode}:\n"
                           f"{done.stderr[-2000:]}")
    return _collected(done.stderr)


def per_request(total: Callable[[int], int], small: int, large: int) -> float:
    """(total(large) - total(small)) / (large - small): instructions per request without start-up."""
    return (total(large) - total(small)) / (large - small)


def measure(server_cmd: Callable[[str, int], list[str]], *, requests: tuple[int, int] = REQUESTS,
            connections: int = 50, steps: tuple[int, int] = STEPS,
            show: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    """{served app: {"served": instructions/request, "stepped": instructions/request, "layers": n}}."""
    out: dict[str, dict[str, float]] = {}
    for app, contender, layers in ROWS:
        served = per_request(lambda n, app=app: served_total(lambda port: server_cmd(app, port), n, connections),
                             *requests)
        stepped = per_request(lambda n, c=contender, k=layers: stepped_total(c, k, n), *steps)
        out[app] = {"served": served, "stepped": stepped, "layers": layers}
        show(f"callgrind {app:12s} served {served:>9,.0f}  stepped ({contender} N={layers}) {stepped:>9,.0f} "
             "instructions/request")
    return out
