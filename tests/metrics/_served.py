"""A served app for the metrics tests: a guard plugin from a file, PrometheusMetrics, the admin app beside it."""

from __future__ import annotations

import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests._process import free_port, start_until_ready, stop

ADMIN_TOKEN = "admin-token-for-the-metrics-tests-0123"
SCRAPE_TOKEN = "scrape-token-for-the-metrics-tests-456"

GUARD = """\
from covet_pipe import MiddlewarePlugin, Response

class Guard(MiddlewarePlugin):
    name = "guard"
    version = "{version}"

    def process_request(self, request, ctx):
        if request.path == "/deny":
            return Response(403, [("content-type", "text/plain")], b"no")
        return None

plugin = Guard()
"""

APP = f"""\
import os

from covet_pipe import PluginConfig, PluginManager, admin_app, wrap
from covet_pipe.builtin import PrometheusMetrics

manager = PluginManager(PluginConfig(plugin_paths=["plugins"], hot_reload=True,
                                     sandbox_enabled=os.environ.get("METRICS_TEST_SANDBOX") == "1"))
manager.register(PrometheusMetrics(manager, token={SCRAPE_TOKEN!r}))

async def hello(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-pid", str(os.getpid()).encode())]}})
    await send({{"type": "http.response.body", "body": b"hello"}})

served = wrap(hello, manager)
admin = admin_app(manager, token={ADMIN_TOKEN!r})

async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/probe":       # does this manager count reloads?
        body = b"yes" if hasattr(manager, "reload_counts") else b"no"
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": body}})
        return
    if scope["type"] == "http" and (scope["path"].startswith("/_plugins") or scope["path"] == "/admin/metrics"):
        if scope["path"] == "/admin/metrics":
            scope = dict(scope, path="/metrics")
        await admin(scope, receive, send)
    else:
        await served(scope, receive, send)
"""


def write_app(folder: Path, version: str = "1.0.0") -> None:
    (folder / "plugins").mkdir(exist_ok=True)
    (folder / "plugins" / "guard.py").write_text(GUARD.format(version=version))
    (folder / "metricsapp.py").write_text(APP)


def serve(folder: Path, *extra: str, env_extra: dict[str, str] | None = None) -> tuple[Any, str]:
    """``covet-pipe serve metricsapp:app`` in *folder*: (process, base URL)."""
    write_app(folder)
    port = free_port()
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "metricsapp:app", "--app-dir", str(folder),
           "--port", str(port), "--log-level", "warning", *extra]
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "COVET_PIPE_METRICS_DIR")}
    env.update(env_extra or {})
    proc = start_until_ready(cmd, port, folder, folder / "serve.log", env=env)
    return proc, f"http://127.0.0.1:{port}"


def get(url: str, *, method: str = "GET", token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a new connection (urllib closes it after the answer)."""
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base: str, path: str = "/metrics", token: str = SCRAPE_TOKEN) -> Samples:
    """The scrape parsed by prometheus-client: (sample name, sorted labels) -> value."""
    status, headers, body = get(base + path, token=token)
    assert status == 200, (status, body[:500])
    assert headers["content-type"].startswith("text/plain; version="), headers
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def children(pid: int) -> set[int]:
    """The pids whose parent is *pid*."""
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


def kill_one_worker(proc: Any, count: int, timeout: float = 30, victim: int | None = None) -> tuple[int, int]:
    """SIGKILL one of *proc*'s *count* workers (*victim* if given) and wait until the supervisor has started
    its replacement: (the killed pid, the new one)."""
    deadline = time.monotonic() + timeout
    workers = children(proc.pid)
    while len(workers) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        workers = children(proc.pid)
    victim = victim if victim is not None else min(workers)
    assert victim in workers, (victim, workers)
    os.kill(victim, signal.SIGKILL)
    while time.monotonic() < deadline:
        now = children(proc.pid)
        fresh = now - workers
        if victim not in now and fresh and len(now) == count:
            return victim, fresh.pop()
        time.sleep(0.1)
    raise AssertionError(f"worker {victim} was not replaced within {timeout} s")


__all__ = ["ADMIN_TOKEN", "SCRAPE_TOKEN", "children", "get", "kill_one_worker", "scrape", "serve", "stop", "value",
           "write_app"]
