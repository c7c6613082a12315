"""Hot reload under load: time from a write to the new version serving, and request latency during reloads.

A Python plugin file in a temporary folder, PluginConfig(hot_reload=True, reload_on_change=True),
uvicorn (uvloop + httptools) on 127.0.0.1 in this process's thread, and a bounded client loop of
CLIENTS httpx connections. Phase 1 measures request latency without reloads; phase 2 does RELOADS
writes alternating v1/v2 and records, for each, the time until a response carries the new version,
while the clients keep measuring. Failed requests are counted (the target is zero).

    python benchmarks/bench_reload.py            # writes its section of docs/benchmarks.md
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

import httpx
import uvicorn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _docs  # noqa: E402

from covet_pipe import PluginConfig, PluginManager, wrap  # noqa: E402

CLIENTS = 8
RELOADS = 20
QUIET_SECONDS = 3.0
PLUGIN = """
from covet_pipe import MiddlewarePlugin

class Versioned(MiddlewarePlugin):
    name = "versioned"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.set("x-version", "{tag}")

def create_plugin(config):
    return Versioned()
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def write(path: str, tag: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(PLUGIN.replace("{tag}", tag))
    os.replace(tmp, path)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="covet-reload-bench-")
    path = os.path.join(folder, "versioned.py")
    write(path, "v1")
    manager = PluginManager(PluginConfig(plugin_paths=[folder], hot_reload=True, reload_on_change=True,
                                         entry_points=False))
    asyncio.run(manager.load_plugins())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(wrap(app, manager), loop="uvloop", http="httptools",
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    state = {"phase": "quiet", "seen": "v1", "stop": False}
    lat: dict[str, list[float]] = {"quiet": [], "reload": []}
    failures = {"count": 0, "mixed": 0}

    def client() -> None:
        with httpx.Client(timeout=10) as c:
            for _ in range(1_000_000):           # bounded; ends on stop
                if state["stop"]:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.get(url)
                except httpx.HTTPError:
                    failures["count"] += 1
                    continue
                lat[state["phase"]].append(time.perf_counter() - t0)
                versions = r.headers.get_list("x-version")
                if r.status_code != 200:
                    failures["count"] += 1
                elif len(versions) != 1:
                    failures["mixed"] += 1
                else:
                    state["seen"] = versions[0]

    workers = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for w in workers:
        w.start()
    time.sleep(QUIET_SECONDS)
    state["phase"] = "reload"
    delays = []
    for i in range(RELOADS):
        tag = "v2" if i % 2 == 0 else "v1"
        t0 = time.perf_counter()
        write(path, tag)
        deadline = t0 + 10
        while state["seen"] != tag and time.perf_counter() < deadline:
            time.sleep(0.002)
        delays.append(time.perf_counter() - t0)
        time.sleep(0.2)
    state["stop"] = True
    for w in workers:
        w.join(timeout=10)
    server.should_exit = True
    thread.join(timeout=20)

    q, r = lat["quiet"], lat["reload"]
    lines = [
        "## Hot reload under load (`benchmarks/bench_reload.py`)", "",
        _docs.machine(),
        f"Command: `{_docs.command()}` (from `make bench-reload`). uvicorn + uvloop + httptools on 127.0.0.1 in "
        f"the same process, {CLIENTS} httpx clients in threads, {RELOADS} writes alternating two versions of a "
        "Python plugin (atomic replace), watchfiles debounce 150 ms.", "",
        "| | p50 | p99 | requests |", "|---|---:|---:|---:|",
        f"| write → new version serving | {statistics.median(delays) * 1000:.0f} ms | "
        f"{pct(delays, 0.99) * 1000:.0f} ms | {RELOADS} reloads |",
        f"| request latency, no reloads | {pct(q, 0.5) * 1000:.2f} ms | {pct(q, 0.99) * 1000:.2f} ms | {len(q)} |",
        f"| request latency, during reloads | {pct(r, 0.5) * 1000:.2f} ms | {pct(r, 0.99) * 1000:.2f} ms | {len(r)} |",
        "",
        f"- {'MET' if failures['count'] == 0 and failures['mixed'] == 0 else 'MISSED'}: failed requests "
        f"{failures['count']}, responses with a mixed chain {failures['mixed']} (target 0)",
        f"- {'MET' if max(delays) <= 1.0 else 'MISSED'}: the new version served within "
        f"{max(delays) * 1000:.0f} ms of each write at worst (target ≤ 1 s)",
    ]
    text = "\n".join(lines)
    print(text)
    print(f"wrote {_docs.update_section('reload', text)}")


if __name__ == "__main__":
    main()
