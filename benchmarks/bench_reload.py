"""Hot reload under load: time from a write to the new version serving, and request latency during reloads.

One temporary plugin folder with three plugins (in-process Python, sandboxed Python, a native
.so built from tests/native/plugins/probe.c), PluginConfig(hot_reload=True, reload_on_change=True),
uvicorn (uvloop + httptools) on 127.0.0.1 in this process's thread, and a bounded client loop of
CLIENTS httpx connections. Phase 1 measures request latency without reloads; phase 2 does the
RELOADS writes, interleaved, alternating v1/v2, and records for each the time until a response
carries the new version, while the clients keep measuring. Failed requests and responses without
exactly one version of each plugin are counted (the target is zero).

    python benchmarks/bench_reload.py            # writes its section of docs/benchmarks.md
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import uvicorn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402

from covet_pipe import PluginConfig, PluginManager, wrap  # noqa: E402

CLIENTS = 8
#: writes per kind of plugin
RELOADS = {"python": 20, "sandboxed": 10, "native": 10}
QUIET_SECONDS = 3.0
ROOT = os.path.dirname(HERE)
PLUGIN = """
from covet_pipe import MiddlewarePlugin

class Versioned(MiddlewarePlugin):
    name = "{name}"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.set("{header}", "{tag}")

def create_plugin(config):
    return Versioned()
"""
#: kind -> (file name, response header carrying its version)
FILES = {"python": ("versioned.py", "x-version"), "sandboxed": ("sb_versioned.py", "x-sb"),
         "native": ("reloadable.so", "x-resp-order")}


def build_native(folder: str, tag: str) -> bytes:
    """The C test plugin probe.c built as 'reloadable' with TAG=tag (it appends TAG to x-resp-order)."""
    out = os.path.join(folder, f"build-{tag}.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I", os.path.join(ROOT, "native_abi"),
                    '-DNAME="reloadable"', "-DPRIORITY=100", f'-DTAG="{tag}"',
                    os.path.join(ROOT, "tests", "native", "plugins", "probe.c"), "-o", out], check=True)
    with open(out, "rb") as f:
        return f.read()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await apps._lifespan(receive, send)
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def write(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def source(kind: str, tag: str) -> bytes:
    name = FILES[kind][0].split(".")[0]
    return PLUGIN.replace("{name}", name).replace("{header}", FILES[kind][1]).replace("{tag}", tag).encode()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="covet-reload-bench-")
    builds = tempfile.mkdtemp(prefix="covet-reload-bench-so-")
    natives = {tag: build_native(builds, tag) for tag in ("v1", "v2")}
    paths = {kind: os.path.join(folder, f) for kind, (f, _) in FILES.items()}
    write(paths["python"], source("python", "v1"))
    write(paths["sandboxed"], source("sandboxed", "v1"))
    write(os.path.join(folder, "sb_versioned.covet-plugin.toml"), b"sandbox = true\n")
    write(paths["native"], natives["v1"])
    manager = PluginManager(PluginConfig(plugin_paths=[folder], hot_reload=True, reload_on_change=True,
                                         entry_points=False))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(wrap(app, manager), loop="uvloop", http="httptools",
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    loop = server.servers[0].get_loop()
    # sandbox helpers belong to the serving loop: load there
    report = asyncio.run_coroutine_threadsafe(manager.load_plugins(), loop).result(60)
    assert sorted(report.loaded) == ["reloadable", "sb_versioned", "versioned"], report.failed

    state: dict = {"phase": "quiet", "stop": False, "seen": {k: "v1" for k in FILES}}
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
                if r.status_code != 200:
                    failures["count"] += 1
                    continue
                for kind, (_, header) in FILES.items():
                    versions = r.headers.get_list(header)
                    if len(versions) != 1:
                        failures["mixed"] += 1
                    else:
                        state["seen"][kind] = versions[0]

    workers = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for w in workers:
        w.start()
    time.sleep(QUIET_SECONDS)
    state["phase"] = "reload"
    delays: dict[str, list[float]] = {k: [] for k in FILES}
    order = [k for k, n in RELOADS.items() for _ in range(n)]
    order = [order[i] for i in sorted(range(len(order)), key=lambda i: (i * 7919) % len(order))]  # interleave
    tags = {k: "v1" for k in FILES}
    for kind in order:
        tags[kind] = "v2" if tags[kind] == "v1" else "v1"
        tag = tags[kind]
        t0 = time.perf_counter()
        write(paths[kind], natives[tag] if kind == "native" else source(kind, tag))
        deadline = t0 + 10
        while state["seen"][kind] != tag and time.perf_counter() < deadline:
            time.sleep(0.002)
        delays[kind].append(time.perf_counter() - t0)
        time.sleep(0.2)
    state["stop"] = True
    for w in workers:
        w.join(timeout=10)
    server.should_exit = True
    thread.join(timeout=20)

    q, r = lat["quiet"], lat["reload"]
    every = [d for v in delays.values() for d in v]
    total = sum(RELOADS.values())
    lines = [
        "## Hot reload under load (`benchmarks/bench_reload.py`)", "",
        _docs.machine(),
        f"Command: `{_docs.command()}` (from `make bench-reload`). uvicorn + uvloop + httptools on 127.0.0.1 in "
        f"the same process, {CLIENTS} httpx clients in threads; one plugin folder with an in-process Python "
        f"plugin, a sandboxed one and a native `.so`; {total} writes interleaved "
        f"({', '.join(f'{n} {k}' for k, n in RELOADS.items())}), each alternating two versions (atomic "
        "replace; for the `.so`, two builds of a C plugin), watchfiles debounce 150 ms.", "",
        "| | p50 | p99 | count |", "|---|---:|---:|---:|",
        *[f"| write → new version serving, {kind} | {statistics.median(v) * 1000:.0f} ms | "
          f"{pct(v, 0.99) * 1000:.0f} ms | {len(v)} reloads |" for kind, v in delays.items()],
        f"| request latency, no reloads | {pct(q, 0.5) * 1000:.2f} ms | {pct(q, 0.99) * 1000:.2f} ms | {len(q)} |",
        f"| request latency, during reloads | {pct(r, 0.5) * 1000:.2f} ms | {pct(r, 0.99) * 1000:.2f} ms | {len(r)} |",
        "",
        f"- {'MET' if failures['count'] == 0 and failures['mixed'] == 0 else 'MISSED'}: failed requests "
        f"{failures['count']}, responses without exactly one version of each plugin {failures['mixed']} (target 0)",
        f"- {'MET' if max(every) <= 1.0 else 'MISSED'}: the new version served within "
        f"{max(every) * 1000:.0f} ms of each write at worst (target ≤ 1 s)",
    ]
    text = "\n".join(lines)
    print(text)
    print(f"wrote {_docs.update_section('reload', text)}")


if __name__ == "__main__":
    main()
