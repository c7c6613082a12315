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


def start_host(folder: Path, *, plugin: str, workers: int, metrics_token: str | None = None) -> tuple[Any, int, Path]:
    """A `covet-pipe serve --workers N` with its own app and plugin folder in *folder*: (proc, port, log).

    With *metrics_token*, PrometheusMetrics serves ``/metrics`` (that bearer token) beside the limiter.
    """
    (folder / "plugins").mkdir(parents=True)
    (folder / "rlapp.py").write_text(APP)
    (folder / "plugins" / "limit.py").write_text(
        "from covet_pipe.builtin import RateLimit\n\n" f"plugin = {plugin}\n")
    if metrics_token is not None:       # the app is a Pipeline whose manager PrometheusMetrics reports
        (folder / "rlapp.py").write_text(APP.replace("async def app(", "async def plain(") + (
            "\nfrom covet_pipe import PluginManager, wrap\nfrom covet_pipe.builtin import PrometheusMetrics\n\n"
            "manager = PluginManager()\n"
            f"manager.register(PrometheusMetrics(manager, token={metrics_token!r}))\n"
            "app = wrap(plain, manager)\n"))
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


class Run:
    """What the clients saw: responses by status (-1: a failed exchange), the run's length, and the
    first and last allowed (200) answer's time (monotonic)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.elapsed = 0.0
        self.first_ok = float("inf")
        self.last_ok = float("-inf")

    @property
    def allowed(self) -> int:
        return self.counts.get(200, 0)

    @property
    def ok_window(self) -> float:
        """Seconds from the first allowed answer to the last."""
        return max(0.0, self.last_ok - self.first_ok)


def hammer(ports: list[int], *, seconds: float, per_port: int = 3, path: str = "/x",
           max_requests: int = 2_000_000) -> Run:
    """Clients (threads, keep-alive) on every port for *seconds*, at most *max_requests* in all."""
    run = Run()
    counts = run.counts
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    sent = [0]

    def client(port: int) -> None:
        local: dict[int, int] = {}
        first, last = float("inf"), float("-inf")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while time.monotonic() < stop_at and sent[0] < max_requests:
                try:
                    conn.request("GET", path)
                    r = conn.getresponse()
                    r.read()
                    local[r.status] = local.get(r.status, 0) + 1
                    if r.status == 200:
                        now = time.monotonic()
                        first, last = min(first, now), now
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
                run.first_ok, run.last_ok = min(run.first_ok, first), max(run.last_ok, last)

    threads = [threading.Thread(target=client, args=(p,)) for p in ports for _ in range(per_port)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    run.elapsed = time.monotonic() - start
    return run
