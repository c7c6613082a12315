"""The fleet's propagation beside its parts, same run, one real redis-server on 127.0.0.1.

Rows (each CHANGES times, one event loop, so the figures are comparable with one another):

- ``redis-py pub/sub``: PUBLISH on one connection until the message is read from a subscription (the peer:
  what any pub/sub-based propagation costs at least);
- ``local reload``: ``reload_plugin`` on a manager without a fleet (what applying a change costs);
- ``fleet: origin reload to other host's``: from the end of host a's reload to the end of host b's (the
  fleet's own ``delay_s``: decode, hash check, reload), each host with its own plugin folder;
- ``fleet: end to end``: from calling ``reload_plugin`` on host a to host b having applied the change.

The last column is each row over (pub/sub + local reload): what the fleet adds beyond the two things it
cannot avoid.

    .venv/bin/python benchmarks/bench_fleet.py [--changes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis_asyncio

from covet_pipe import PluginConfig, PluginManager

PLUGIN = '''
from covet_pipe import MiddlewarePlugin


class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "1.0.{n}"

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "{n}")


plugin = Stamp()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deploy(folder: Path, n: int) -> None:
    tmp = folder / ".stamp.tmp"
    tmp.write_text(PLUGIN.format(n=n))
    os.replace(tmp, folder / "stamp.py")


def stats(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def pubsub_round_trips(url: str, changes: int) -> list[float]:
    client = redis_asyncio.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench-fleet")
    await pubsub.get_message(timeout=1.0)           # the subscribe confirmation
    out = []
    try:
        for i in range(changes):
            started = time.perf_counter()
            await client.publish("bench-fleet", f"change {i}")
            while await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0) is None:
                pass
            out.append(time.perf_counter() - started)
    finally:
        await pubsub.aclose()
        await client.aclose()
    return out


async def local_reloads(root: Path, changes: int) -> list[float]:
    folder = root / "local"
    folder.mkdir()
    deploy(folder, 0)
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], hot_reload=True))
    await manager.initialize_all()
    out = []
    try:
        for n in range(1, changes + 1):
            deploy(folder, n)
            started = time.perf_counter()
            await manager.reload_plugin("stamp")
            out.append(time.perf_counter() - started)
    finally:
        await manager.shutdown_all()
    return out


async def fleet_changes(root: Path, url: str, changes: int) -> tuple[list[float], list[float]]:
    folders = [root / "a", root / "b"]
    managers = []
    for folder in folders:
        folder.mkdir()
        deploy(folder, 0)
        managers.append(PluginManager(PluginConfig(plugin_paths=[str(folder)], hot_reload=True, fleet=url,
                                                   fleet_name="bench")))
    a, b = managers
    for m in managers:
        await m.initialize_all()

    def fleet(m: PluginManager) -> dict:
        health = m.fleet_health()
        assert health is not None
        return health

    end_to_end = []
    try:
        deadline = time.monotonic() + 10
        while not (fleet(a)["connected"] and fleet(b)["connected"]):
            if time.monotonic() > deadline:
                raise SystemExit("the fleet did not connect within 10 s")
            await asyncio.sleep(0.01)
        for n in range(1, changes + 1):
            for folder in folders:
                deploy(folder, n)
            started = time.perf_counter()
            await a.reload_plugin("stamp")
            deadline = time.monotonic() + 10
            while fleet(b)["counts"]["applied"] < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"change {n} did not reach host b within 10 s")
                await asyncio.sleep(0.0002)
            end_to_end.append(time.perf_counter() - started)
        propagation = [r["delay_s"] for r in fleet(b)["recent"]][-changes:]
    finally:
        for m in managers:
            await m.shutdown_all()
    return propagation, end_to_end


async def main(url: str, changes: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        pubsub = await pubsub_round_trips(url, changes)
        local = await local_reloads(root, changes)
        propagation, end_to_end = await fleet_changes(root, url, changes)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = stats(pubsub)[0] + stats(local)[0]
    rows = [("redis-py pub/sub (peer)", pubsub), ("local reload", local),
            ("fleet: origin reload to other host's", propagation), ("fleet: end to end", end_to_end)]
    print(f"fleet propagation, {changes} changes, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"{'':40} {'p50 ms':>8} {'p99 ms':>8} {'p50 / (pub/sub + local reload)':>32}")
    for label, samples in rows:
        p50, p99 = stats(samples)
        print(f"{label:40} {p50:8.2f} {p99:8.2f} {p50 / base:32.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed: run `make redis`")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--loglevel", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        asyncio.run(main(f"redis://127.0.0.1:{port}/0", args.changes))
    finally:
        server.terminate()
        server.wait(10)
