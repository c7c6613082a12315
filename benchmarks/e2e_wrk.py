"""End to end: uvicorn (uvloop + httptools) under wrk, bare app vs 10 no-op plugins vs 10 Starlette layers.

    python benchmarks/e2e_wrk.py [--rounds 5] [--duration 5] [--connections 50] [--no-doc]

Starts one uvicorn per app (127.0.0.1, a free port, 1 process, log level warning, no access log;
apps from benchmarks/apps.py), warms each up, then runs ``wrk -t1 -cC -dDs`` against them in
interleaved rounds (the order rotates each round). Reports the median req/s and the server's CPU time
per request (utime + stime from /proc/<pid>/stat around each wrk run: wrk and the server share the
cores, so CPU per request is the steadier figure), each as a ratio to the bare app, and writes the
"e2e" section of docs/benchmarks.md. Needs wrk (``make bench-e2e`` installs Debian's).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402

APPS = (
    ("bare", "bare app"),
    ("covet10", f"behind {apps.E2E_LAYERS} no-op covet-pipe plugins (sync hooks)"),
    ("starlette10", f"behind {apps.E2E_LAYERS} Starlette pure-ASGI send-wrapping layers"),
)
PATH = "/hello"
TARGET = 0.92
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uvicorn_cmd(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", f"apps:{app}", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--log-level", "warning", "--no-access-log"]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


class Server:
    def __init__(self, app: str) -> None:
        self.app = app
        self.port = free_port()
        self.proc = subprocess.Popen(uvicorn_cmd(app, self.port), stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn for {self.app} exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", PATH)
                r = conn.getresponse()
                body = r.read()
                conn.close()
                if r.status != 200 or body != apps.BODY:
                    raise RuntimeError(f"{self.app}: GET {PATH} answered {r.status} {body[:80]!r}")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn for {self.app} did not answer on port {self.port}")
                time.sleep(0.1)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk(url: str, duration: float, connections: int, threads: int, *, headers: tuple[str, ...] = ()) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "requests": total, "non2xx": int(bad.group(1)) if bad else 0,
            "errors": errs.group(0) if errs else "", "cmd": " ".join(cmd[:-1])}


def measure(server: Server, duration: float, connections: int, threads: int, *,
            headers: tuple[str, ...] = ()) -> dict:
    before = cpu_ticks(server.proc.pid)
    r = wrk(server.url(), duration, connections, threads, headers=headers)
    r["cpu_us"] = (cpu_ticks(server.proc.pid) - before) / CLK_TCK * 1e6 / max(r["requests"], 1)
    if r["non2xx"] or r["errors"]:
        raise RuntimeError(f"{server.app}: wrk saw failures: {r}")
    return r


def interleaved_rounds(servers: dict, rounds: int, run: Any, show: Any) -> dict[str, list[dict]]:
    """Measure each server once per round, rotating the order every round so drift spreads evenly."""
    results: dict[str, list[dict]] = {name: [] for name in servers}
    names = list(servers)
    for rnd in range(rounds):
        for name in names[rnd % len(names):] + names[:rnd % len(names)]:
            r = run(servers[name])
            results[name].append(r)
            show(rnd, name, r)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk per server before the rounds")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("at least 3 rounds (DESIGN.md: median of >= 3 interleaved rounds)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-e2e does it)")
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    wrk_version = "wrk " + (wrk_version.split()[1] if len(wrk_version.split()) > 1 else "?")

    servers: dict[str, Server] = {}
    results: dict[str, list[dict]] = {name: [] for name, _ in APPS}
    try:
        for name, _ in APPS:
            servers[name] = Server(name)
        for name, _ in APPS:
            wrk(servers[name].url(), args.warmup, args.connections, args.threads)
        results = interleaved_rounds(
            servers, args.rounds, lambda srv: measure(srv, args.duration, args.connections, args.threads),
            lambda rnd, name, r: print(f"round {rnd + 1}/{args.rounds} {name:12s} {r['rps']:>10,.0f} req/s  "
                                       f"{r['cpu_us']:6.1f} µs CPU/request", flush=True))
    finally:
        for s in servers.values():
            s.stop()

    rps = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
    cpu = {n: statistics.median(r["cpu_us"] for r in rs) for n, rs in results.items()}
    lines = ["| app | median req/s | of bare | server CPU µs/request | bare CPU ÷ this | req/s per round |",
             "|---|---:|---:|---:|---:|---|"]
    for name, label in APPS:
        per = ", ".join(f"{r['rps']:,.0f}" for r in results[name])
        lines.append(f"| {label} | {rps[name]:,.0f} | {rps[name] / rps['bare'] * 100:.1f}% | "
                     f"{cpu[name]:.1f} | {cpu['bare'] / cpu[name] * 100:.1f}% | {per} |")
    table = "\n".join(lines)
    ratio = rps["covet10"] / rps["bare"]
    st = rps["starlette10"] / rps["bare"]
    verdict = (f"- {'MET' if ratio >= TARGET else 'MISSED'}: with {apps.E2E_LAYERS} no-op plugins covet-pipe "
               f"serves {ratio * 100:.1f}% of the bare app's requests/s (target ≥ {TARGET * 100:.0f}%; "
               f"margin {(ratio - TARGET) * 100:+.1f} points); Starlette's {apps.E2E_LAYERS} layers "
               f"{st * 100:.1f}% in the same run.\n"
               f"- by server CPU per request: covet-pipe {cpu['bare'] / cpu['covet10'] * 100:.1f}% of bare's "
               f"efficiency, Starlette {cpu['bare'] / cpu['starlette10'] * 100:.1f}%; added CPU per request: "
               f"covet-pipe {cpu['covet10'] - cpu['bare']:+.1f} µs, Starlette {cpu['starlette10'] - cpu['bare']:+.1f} µs.")
    wrk_cmd = results["bare"][0]["cmd"]
    body = f"""## End to end: uvicorn + uvloop + httptools under wrk (`benchmarks/e2e_wrk.py`)

{_docs.machine()}; {_docs.versions("uvicorn", "uvloop", "httptools", "starlette")}; {wrk_version.strip()}.
Command: `make bench-e2e` = `python benchmarks/e2e_wrk.py --rounds {args.rounds} --duration {args.duration:g}`.
Server: `python {' '.join(uvicorn_cmd('<app>', 0)[1:]).replace(' --port 0', ' --port <free>').replace(HERE, 'benchmarks')}`
(one process). Load: `{wrk_cmd} http://127.0.0.1:<port>{PATH}` after a {args.warmup:g} s warm-up per
server; {args.rounds} interleaved rounds (order rotated), medians. wrk and the server share the
machine's {os.cpu_count()} CPUs; CPU per request comes from the server's /proc/<pid>/stat.

{table}

{verdict}
"""
    print()
    print(body)
    if not args.no_doc:
        print("wrote", _docs.update_section("e2e", body))


if __name__ == "__main__":
    main()
