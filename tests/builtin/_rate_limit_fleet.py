"""Real `covet-pipe serve` processes with a RateLimit plugin file, and clients hammering them (bounded).

Used by tests/builtin/test_rate_limit_processes.py (a few seconds) and tests/scale (30 s runs).
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests._process import free_port, start_until_ready

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
'''


def start_host(folder: Path, *, plugin: str, workers: int) -> tuple[Any, int, Path]:
    """A `covet-pipe serve --workers N` with its own app and plugin folder in *folder*: (proc, port, log)."""
    (folder / "plugins").mkdir(parents=True)
    (folder / "rlapp.py").write_text(APP)
    (folder / "plugins" / "limit.py").write_text(
        "from covet_pipe.builtin import RateLimit\n\n" f"plugin = {plugin}\n")
    port = free_port()
    log = folder / "serve.log"
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "rlapp:app", "--app-dir", str(folder),
           "--port", str(port), "--workers", str(workers), "--plugins", str(folder / "plugins"),
           "--log-level", "warning"]
    proc = start_until_ready(cmd, port, folder, log, timeout=60)
    return proc, port, log


def wait_serving(port: int, timeout: float = 30.0) -> None:
    """Until a request through the chain answers (the plugins started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/ready")
            status = conn.getresponse().status
            conn.close()
            if status in (200, 429):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"port {port} did not answer through the chain within {timeout} s")


def hammer(ports: list[int], *, seconds: float, per_port: int = 3, path: str = "/x",
           max_requests: int = 2_000_000) -> tuple[dict[int, int], float]:
    """Clients (threads, keep-alive) on every port for *seconds*: ({status: n}, elapsed seconds)."""
    counts: dict[int, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    sent = [0]

    def client(port: int) -> None:
        local: dict[int, int] = {}
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while time.monotonic() < stop_at and sent[0] < max_requests:
                try:
                    conn.request("GET", path)
                    r = conn.getresponse()
                    r.read()
                    local[r.status] = local.get(r.status, 0) + 1
                except (OSError, http.client.HTTPException):
                    local[-1] = local.get(-1, 0) + 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                sent[0] += 1
        finally:
            conn.close()
            with lock:
                for k, v in local.items():
                    counts[k] = counts.get(k, 0) + v

    threads = [threading.Thread(target=client, args=(p,)) for p in ports for _ in range(per_port)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    return counts, time.monotonic() - start
