"""What one dashboard event costs the serving loop: a snapshot (plugins, chain, health, history) and
its JSON, for a manager of 10 and of 100 no-op middleware plugins; and the size of one event.

The streams over one manager share one snapshot per tick (``covet_pipe.admin.events.shared_event``),
so this is the cost per second whatever the number of dashboards open.

    python benchmarks/bench_dashboard.py           # prints one line per manager size
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from covet_pipe import PluginConfig, PluginManager
from covet_pipe.admin.events import snapshot, shared_event

PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class P(MiddlewarePlugin):
    name = "p{i}"
    version = "1.0.{i}"
    priority = {i}

    def process_request(self, request, ctx):
        return None

plugin = P()
'''
ROUNDS = 40


async def measure(count: int, folder: Path) -> str:
    for i in range(count):
        (folder / f"p{i}.py").write_text(PLUGIN.format(i=i))
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)]))
    await manager.load_plugins()
    await manager.initialize_all()
    try:
        await snapshot(manager)                 # warm
        times = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            event = await shared_event(manager)
            times.append(time.perf_counter() - start)
            await asyncio.sleep(0.5 + 0.001)    # past the sharing window: each round makes a new one
        q = statistics.quantiles(times, n=10)
        return (f"{count:>4} plugins: snapshot + JSON median {statistics.median(times) * 1e3:.2f} ms, "
                f"p90 {q[-1] * 1e3:.2f} ms; {len(event) / 1024:.1f} KiB an event")
    finally:
        await manager.shutdown_all()


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [10, 100]
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            print(asyncio.run(measure(count, Path(folder))), flush=True)


if __name__ == "__main__":
    main()
