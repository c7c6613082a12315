"""covet-pipe's own listener under wrk: `covet-pipe serve` vs uvicorn+uvloop+httptools vs granian vs nginx.

    python benchmarks/bench_serve.py [--rounds 3] [--duration 5] [--connections 50] [--no-doc]

One process each on 127.0.0.1 (a free port), the same bare app (``benchmarks/apps.py: bare``),
plus ``covet-pipe serve`` of the same app behind 10 no-op plugins (``apps:covet10``). After a
warm-up, ``wrk -t1 -cC -dDs --latency`` runs against each in interleaved rounds (order rotated);
medians of req/s, p99 latency and the server's CPU per request (from /proc/<pid>/stat) are
reported, each beside its ratio to uvicorn's bare figure, in the "listener" section of
docs/benchmarks.md. nginx (one worker, ``return 200`` of the same body, no app) is this machine's limit.
Needs wrk and nginx (``make bench-serve`` installs Debian's wrk and nginx-light) and granian (pip).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402
from e2e_wrk import CLK_TCK, PATH, Server, cpu_ticks, free_port, interleaved_rounds, uvicorn_cmd  # noqa: E402

TARGET_BARE = 1.3
TARGET_PLUGINS = 1.2
TARGET_GRANIAN = 1.5
TARGET_NGINX = 0.7


def covet_cmd(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "covet_pipe.cli", "serve", f"apps:{app}", "--app-dir", HERE,
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]


def granian_cmd(app: str, port: int) -> list[str]:
    exe = shutil.which("granian", path=os.path.dirname(sys.executable)) or "granian"
    return [exe, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--loop", "uvloop", "--log-level", "warning", "--no-ws", "--working-dir", HERE, f"apps:{app}"]


def nginx_cmd(app: str, port: int) -> list[str]:
    """nginx with one worker answering the bare app's bytes itself (``return 200``): this machine's limit."""
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx-light (make bench-serve does it)")
    folder = tempfile.mkdtemp(prefix="covet-bench-nginx-")
    conf = os.path.join(folder, "nginx.conf")
    body = apps.BODY.decode()
    with open(conf, "w", encoding="ascii") as f:
        f.write(f"""worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
""")
    return ["nginx", "-c", conf, "-p", folder]


CONTENDERS = (
    # name, label, command builder, app
    ("uvicorn", "uvicorn + uvloop + httptools, bare app", uvicorn_cmd, "bare"),
    ("granian", "granian --interface asgi, bare app", granian_cmd, "bare"),
    ("covet", "covet-pipe serve, bare app", covet_cmd, "bare"),
    ("covet10", f"covet-pipe serve, {apps.E2E_LAYERS} no-op plugins", covet_cmd, "covet10"),
    ("nginx", "nginx, 1 worker, `return 200` (no Python: the machine's limit)", nginx_cmd, "bare"),
)


class CmdServer(Server):
    """e2e_wrk.Server, started from any command line."""

    def __init__(self, name: str, cmd, app: str) -> None:  # noqa: ANN001
        self.app = name
        self.port = free_port()
        self.cmd = cmd(app, self.port)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, cwd=HERE)
        self._wait_ready()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, duration: float, connections: int, threads: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "requests": total, "p99_ms": _ms(*p99.groups()) if p99 else float("nan"),
            "non2xx": int(bad.group(1)) if bad else 0, "errors": errs.group(0) if errs else "",
            "cmd": " ".join(cmd[:-1])}


def tree_ticks(pid: int) -> int:
    """CPU ticks of *pid* and its descendants (granian serves from a child process)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    family, todo = set(), [pid]
    while todo:
        p = todo.pop()
        family.add(p)
        todo.extend(c for c, pp in parents.items() if pp == p and c not in family)
    total = 0
    for p in family:
        try:
            total += cpu_ticks(p)
        except OSError:
            pass
    return total


def measure(server: CmdServer, duration: float, connections: int, threads: int) -> dict:
    before = tree_ticks(server.proc.pid)
    r = wrk(server.url(), duration, connections, threads)
    r["cpu_us"] = (tree_ticks(server.proc.pid) - before) / CLK_TCK * 1e6 / max(r["requests"], 1)
    if r["non2xx"] or r["errors"]:
        raise RuntimeError(f"{server.app}: wrk saw failures: {r}")
    return r


def _perf_table(data: str, key: str, limit: int) -> list[tuple[float, str]]:
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", key, "-g", "none",
                          "--stdio"], capture_output=True, text=True, timeout=120).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
        if m and not line.lstrip().startswith("#"):
            rows.append((float(m.group(1)), m.group(2)))
    return rows[:limit]


def profile(seconds: float, connections: int) -> str:
    """``perf record -e cpu-clock`` on `covet-pipe serve` of the bare app under wrk: where its CPU goes."""
    if shutil.which("perf") is None:
        return "(no profile: perf is not installed; apt-get install linux-perf)"
    server = CmdServer("covet", covet_cmd, "bare")
    data = os.path.join(HERE, "results", "serve-perf.data")
    os.makedirs(os.path.dirname(data), exist_ok=True)
    try:
        load = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{seconds + 3:g}s", server.url()],
                                stdout=subprocess.DEVNULL)
        time.sleep(1)
        rec = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(server.proc.pid),
                              "-o", data, "--", "sleep", f"{seconds:g}"], capture_output=True, text=True,
                             timeout=seconds + 60)
        load.wait(seconds + 30)
    finally:
        server.stop()
    if rec.returncode != 0:
        return f"(no profile: perf record failed: {rec.stderr.strip()[-200:]})"
    names = {"[kernel.kallsyms]": "kernel (loopback TCP, syscalls)", "libpython3.11.so.1.0": "CPython",
             "loop.cpython-311-x86_64-linux-gnu.so": "uvloop", "parser.cpython-311-x86_64-linux-gnu.so":
             "httptools", "_http11.cpython-311-x86_64-linux-gnu.so": "covet-pipe _http11",
             "_core.cpython-311-x86_64-linux-gnu.so": "covet-pipe _core", "libc.so.6": "libc",
             "_asyncio.cpython-311-x86_64-linux-gnu.so": "_asyncio (Task)"}
    dsos = ", ".join(f"{names.get(d, d)} {p:.0f}%" for p, d in _perf_table(data, "dso", 8) if p >= 0.5)
    syms = ", ".join(f"`{sym.split('] ', 1)[-1]}` {p:.1f}%" for p, sym in _perf_table(data, "sym", 8))
    return (f"Where `covet-pipe serve`'s CPU goes (bare app under wrk -c{connections}; `perf record -e cpu-clock "
            f"-g` for {seconds:g} s, `perf report --sort dso`): {dsos}. Largest symbols: {syms}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated contenders (default: all)")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--profile", type=float, default=5.0, help="seconds of perf on covet-pipe serve (0: none)")
    args = ap.parse_args()
    if args.rounds < 3 and not args.no_doc:
        ap.error("at least 3 rounds for the docs (DESIGN.md: median of >= 3 interleaved rounds)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-serve does it)")
    chosen = [c for c in CONTENDERS if not args.only or c[0] in args.only.split(",")]
    servers: dict[str, CmdServer] = {}
    results: dict[str, list[dict]] = {c[0]: [] for c in chosen}
    try:
        for name, _label, cmd, app in chosen:
            servers[name] = CmdServer(name, cmd, app)
        for name in servers:
            wrk(servers[name].url(), args.warmup, args.connections, args.threads)
        results = interleaved_rounds(
            servers, args.rounds, lambda srv: measure(srv, args.duration, args.connections, args.threads),
            lambda rnd, name, r: print(f"round {rnd + 1}/{args.rounds} {name:8s} {r['rps']:>10,.0f} req/s  "
                                       f"p99 {r['p99_ms']:6.2f} ms  {r['cpu_us']:6.1f} µs CPU/request",
                                       flush=True))
    finally:
        for s in servers.values():
            s.stop()
    prof = profile(args.profile, args.connections) if args.profile > 0 else ""
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("rps", "p99_ms", "cpu_us")}
           for n, rs in results.items() if rs}
    base = med.get("uvicorn")
    lines = ["| server | median req/s | ÷ uvicorn | p99 ms | server CPU µs/request | req/s per round |",
             "|---|---:|---:|---:|---:|---|"]
    for name, label, cmd, _app in chosen:
        m = med[name]
        ratio = f"{m['rps'] / base['rps']:.2f}×" if base else "-"
        per = ", ".join(f"{r['rps']:,.0f}" for r in results[name])
        lines.append(f"| {label} | {m['rps']:,.0f} | {ratio} | {m['p99_ms']:.2f} | {m['cpu_us']:.1f} | {per} |")
    verdict = []
    if base and "covet" in med:
        r = med["covet"]["rps"] / base["rps"]
        verdict.append(f"- {'MET' if r >= TARGET_BARE else 'MISSED'}: `covet-pipe serve` bare {r:.2f}× uvicorn "
                       f"(target ≥ {TARGET_BARE}×); p99 {med['covet']['p99_ms']:.2f} ms vs uvicorn "
                       f"{base['p99_ms']:.2f} ms.")
    if base and "covet10" in med:
        r = med["covet10"]["rps"] / base["rps"]
        verdict.append(f"- {'MET' if r >= TARGET_PLUGINS else 'MISSED'}: with {apps.E2E_LAYERS} no-op plugins "
                       f"{r:.2f}× uvicorn's bare figure (target ≥ {TARGET_PLUGINS}×).")
    if base and "granian" in med:
        verdict.append(f"- granian (Rust HTTP, same run): {med['granian']['rps'] / base['rps']:.2f}× uvicorn.")
    if "covet" in med and "granian" in med:
        r = med["covet"]["rps"] / med["granian"]["rps"]
        verdict.append(f"- {'MET' if r >= TARGET_GRANIAN else 'MISSED'}: `covet-pipe serve` bare {r:.2f}× granian "
                       f"(target ≥ {TARGET_GRANIAN}×).")
    if "covet" in med and "nginx" in med:
        r = med["covet"]["rps"] / med["nginx"]["rps"]
        verdict.append(f"- {'MET' if r >= TARGET_NGINX else 'MISSED'}: `covet-pipe serve` bare {r:.2f}× nginx "
                       f"(target ≥ {TARGET_NGINX}×; nginx answers from C without an app).")
    body = f"""## Own listener: `covet-pipe serve` vs uvicorn vs granian vs nginx under wrk (`benchmarks/bench_serve.py`)

{_docs.machine()}; {_docs.versions("uvicorn", "uvloop", "httptools", "granian")}.
Command: `make bench-serve` = `python benchmarks/bench_serve.py --rounds {args.rounds} --duration {args.duration:g}`.
One process each, 127.0.0.1; load `wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s --latency
http://127.0.0.1:<port>{PATH}` after a {args.warmup:g} s warm-up per server, {args.rounds} interleaved
rounds (order rotated), medians. wrk and the servers share the machine's {os.cpu_count()} CPUs.
Servers: `python {' '.join(covet_cmd('<app>', 0)[1:]).replace(HERE, 'benchmarks').replace('--port 0', '--port <free>')}`;
uvicorn as in the e2e section; `granian --interface asgi --workers 1 --loop uvloop`; nginx 1 worker,
`access_log off`, `return 200` of the same body.

{chr(10).join(lines)}

{chr(10).join(verdict)}

{prof}
"""
    print()
    print(body)
    if not args.no_doc:
        print("wrote", _docs.update_section("listener", body))


if __name__ == "__main__":
    main()
