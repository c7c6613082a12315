"""What metrics cost: `covet-pipe serve` with 10 no-op plugins, PrometheusMetrics on vs off, under wrk.

    python benchmarks/bench_metrics.py [--rounds 8] [--duration 5] [--connections 50] [--no-doc]

Both servers run at once (one process each on 127.0.0.1, ``benchmarks/metrics_apps.py``); each
round measures both, the order alternating, and the ratio on/off is taken within the round
(paired), so that drift of the machine between rounds cancels. While the ``on`` server is measured a
scraper fetches its ``/metrics`` once a second (Prometheus scrapes every 15 s by default: this is
harsher). Then the scrape itself: ``covet_pipe.metrics.collector.scrape`` over 100 plugins that have
served requests, timed with timeit; the same 10 plugins with and without it in process (no sockets);
and the instructions per served request off and on, counted by callgrind (moved far less by the
machine's load than wrk's figures). Writes the "metrics" section of docs/benchmarks.md. Needs wrk
and valgrind (``make bench-metrics`` installs Debian's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import timeit
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402
from bench_serve import CmdServer, measure  # noqa: E402
from e2e_wrk import half_iqr  # noqa: E402

GOAL = 0.98             #: requests/s with metrics on, as a share of off
SCRAPE_PLUGINS = 100


def metrics_cmd(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "covet_pipe.cli", "serve", f"metrics_apps:{app}", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


class Scraper:
    """Fetches http://127.0.0.1:PORT/metrics every *interval* seconds until stopped."""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.done = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            with urllib.request.urlopen(self.url, timeout=10) as r:
                assert r.status == 200 and b"covet_pipe_plugin_calls_total" in r.read()
            self.scrapes += 1

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(15)


def scrape_time(plugins: int, requests: int = 2000) -> dict[str, float]:
    """Seconds one scrape takes over *plugins* plugins that served *requests* requests (in process)."""
    from covet_pipe.metrics.collector import scrape

    pipeline = apps.covet(apps.hello, apps.sync_plugins(plugins), start=True)
    _drive(pipeline, requests)
    _, body = scrape(pipeline.manager)
    timer = timeit.Timer(lambda: scrape(pipeline.manager))
    n = 20
    runs = [min(timer.repeat(repeat=5, number=n)) / n for _ in range(3)]
    return {"seconds": statistics.median(runs), "bytes": float(len(body)),
            "series": float(sum(1 for line in body.splitlines() if line and not line.startswith(b"#")))}


def _drive(pipeline: object, requests: int) -> float:
    """Seconds *requests* GETs take through *pipeline*, called as a server calls it (no sockets)."""
    scope = {"type": "http", "method": "GET", "path": apps_path(), "headers": [], "query_string": b"",
             "http_version": "1.1", "scheme": "http", "asgi": {"version": "3.0"}}
    message = {"type": "http.request", "body": b""}

    async def receive() -> dict:
        return message

    async def send(message: dict) -> None:
        pass

    async def run() -> float:
        t0 = time.perf_counter()
        for _ in range(requests):
            await pipeline(dict(scope), receive, send)
        return time.perf_counter() - t0

    return asyncio.run(run())


def layer_cost(requests: int = 5000, repeats: int = 15) -> dict[str, float]:
    """µs per request in process, 10 plugins without and with PrometheusMetrics (interleaved, min of *repeats*),
    and the scrape of those 11 plugins in ms: Python work against Python work, which a busy machine keeps."""
    import metrics_apps
    from covet_pipe.metrics.collector import scrape

    piped = {name: metrics_apps._build(name == "on") for name in ("off", "on")}
    for p in piped.values():
        asyncio.run(p.manager.initialize_all())
        _drive(p, 2000)
    best = {name: float("inf") for name in piped}
    for _ in range(repeats):
        for name, p in piped.items():
            best[name] = min(best[name], _drive(p, requests) / requests * 1e6)
    manager = piped["on"].manager
    timer = timeit.Timer(lambda: scrape(manager))
    return {"off_us": best["off"], "on_us": best["on"],
            "scrape_ms": min(timer.repeat(repeat=5, number=50)) / 50 * 1e3}


def instructions(requests: tuple[int, int] = (1000, 3000)) -> dict[str, float]:
    """User-space instructions per request of `covet-pipe serve`, metrics off and on, counted by callgrind
    (benchmarks/served_instructions.py: N keep-alive GETs from 50 connections, two N subtracted): far steadier than
    timings on a busy machine, though the requests one event-loop turn takes still move it."""
    import served_instructions

    return {app: served_instructions.per_request(
        lambda n, app=app: served_instructions.served_total(lambda port: metrics_cmd(app, port), n, 50), *requests)
        for app in ("off", "on")}


def apps_path() -> str:
    from e2e_wrk import PATH
    return PATH


def instr_line(ins: dict[str, float] | None) -> str:
    if ins is None:
        return "- (no instruction counts: valgrind is not installed, or --no-instructions)\n"
    ratio = ins["off"] / ins["on"]
    return (f"- Instructions per served request (callgrind, user space, `PYTHONHASHSEED=0`; moved less than timings "
            f"by a busy machine, though how many requests one event-loop turn takes still moves it): off {ins['off']:,.0f}, on {ins['on']:,.0f} ({ins['on'] - ins['off']:+,.0f}, the path check); "
            f"off / on = **{ratio:.3f}** ({'MET' if ratio >= GOAL else 'MISSED'}: goal ≥ {GOAL}; the kernel's share, "
            "the same in both, is left out, so the served ratio is nearer 1).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--no-instructions", action="store_true", help="skip the callgrind counts (~3 min)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-metrics does it)")
    servers = {name: CmdServer(name, metrics_cmd, name) for name in ("off", "on")}
    results: dict[str, list[dict]] = {"off": [], "on": []}
    scrapes = 0
    try:
        for s in servers.values():
            measure(s, args.warmup, args.connections, args.threads)
        for rnd in range(args.rounds):
            for name in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
                if name == "on":
                    with Scraper(servers["on"].port) as scraper:
                        r = measure(servers[name], args.duration, args.connections, args.threads)
                    scrapes += scraper.scrapes
                else:
                    r = measure(servers[name], args.duration, args.connections, args.threads)
                results[name].append(r)
                print(f"round {rnd + 1}/{args.rounds} metrics {name:3s} {r['rps']:>10,.0f} req/s  "
                      f"p99 {r['p99_ms']:6.2f} ms  {r['cpu_us']:6.1f} µs CPU/request", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    ratios = [on["rps"] / off["rps"] for on, off in zip(results["on"], results["off"])]
    cpu_added = [on["cpu_us"] - off["cpu_us"] for on, off in zip(results["on"], results["off"])]
    cpu_ratios = [off["cpu_us"] / on["cpu_us"] for on, off in zip(results["on"], results["off"])]
    ratio, spread = statistics.median(ratios), half_iqr(ratios)
    cpu_ratio, cpu_spread = statistics.median(cpu_ratios), half_iqr(cpu_ratios)
    med = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
    st = scrape_time(SCRAPE_PLUGINS)
    lc = layer_cost()
    ins = instructions() if not args.no_instructions and shutil.which("valgrind") else None
    off_cpu = statistics.median(r["cpu_us"] for r in results["off"])
    added = lc["on_us"] - lc["off_us"] + lc["scrape_ms"] * 1e3 / med["on"]     # the check, and a scrape a second
    estimate = off_cpu / (off_cpu + max(0.0, added))
    def verdict(value: float, scatter: float) -> str:
        word = "MET" if value >= GOAL else "MISSED"
        return word + (f" (but the rounds scatter ±{scatter:.3f}, more than the {1 - GOAL:.0%} goal: the machine was "
                       "busy, read the CPU figure)" if scatter > 1 - GOAL else "")
    body = f"""## Metrics: PrometheusMetrics on vs off under wrk (`benchmarks/bench_metrics.py`)

{_docs.machine()}; {_docs.versions("prometheus-client", "uvloop", "httptools")}.
Command: `make bench-metrics` = `python benchmarks/bench_metrics.py --rounds {args.rounds} --duration {args.duration:g}`.
`covet-pipe serve` of the bare app behind {apps.E2E_LAYERS} no-op sync plugins, without (`off`) and with
(`on`) `PrometheusMetrics` in front; `wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s` per run,
{args.rounds} rounds, both servers in each round (order alternating), ratio taken within the round; during the
`on` runs `/metrics` is scraped once a second ({scrapes} scrapes in all).

| | median req/s | req/s per round |
|---|---:|---|
| metrics off | {med['off']:,.0f} | {', '.join(f"{r['rps']:,.0f}" for r in results['off'])} |
| metrics on | {med['on']:,.0f} | {', '.join(f"{r['rps']:,.0f}" for r in results['on'])} |

- requests/s, {verdict(ratio, spread)}: metrics on / off = **{ratio:.3f}** ± {spread:.3f} (median of the paired
  rounds ± half their IQR; goal ≥ {GOAL}); per round {', '.join(f'{x:.3f}' for x in ratios)}.
- server CPU per request (from /proc, what req/s would follow on a CPU-bound idle machine), {verdict(cpu_ratio, cpu_spread)}:
  off / on = **{cpu_ratio:.3f}** ± {cpu_spread:.3f}; per round {', '.join(f'{x:.3f}' for x in cpu_ratios)}; added per
  request (paired median) {statistics.median(cpu_added):+.2f} µs of {statistics.median(r['cpu_us'] for r in results['off']):.1f} µs.
- In process (no sockets; interleaved, min of 15 × 5,000 requests): {apps.E2E_LAYERS} plugins {lc['off_us']:.2f} µs a
  request, with PrometheusMetrics {lc['on_us']:.2f} µs (**{lc['on_us'] - lc['off_us']:+.2f} µs**, its path check); a scrape of
  those 11 plugins {lc['scrape_ms']:.2f} ms, once a second at {med['on']:,.0f} req/s {lc['scrape_ms'] * 1e3 / med['on']:.3f} µs a
  request. Against the server's {off_cpu:.1f} µs of CPU a request (metrics off, above) that is
  **{estimate:.3f}** of the off figure ({'MET' if estimate >= GOAL else 'MISSED'}: goal ≥ {GOAL}), the estimate that holds
  when wrk's rounds scatter.
{instr_line(ins)}- One scrape over {SCRAPE_PLUGINS} plugins (after 2,000 requests; {st['series']:.0f} series, {st['bytes'] / 1024:.0f} KiB):
  **{st['seconds'] * 1e3:.2f} ms** (`covet_pipe.metrics.collector.scrape`, timeit, median of 3 best-of-5).
- Both servers count responses, durations and hook samples in C whether metrics are scraped or not: the
  ratio measures the plugin's path check per request and the scrapes, not those counters.
"""
    print()
    print(body)
    if not args.no_doc:
        print("wrote", _docs.update_section("metrics", body))


if __name__ == "__main__":
    main()
