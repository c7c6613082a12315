"""GZip through uvicorn under wrk: covet-pipe's GZip plugin vs Starlette's GZipMiddleware, 64 KiB responses.

    python benchmarks/bench_gzip.py [--rounds 3] [--duration 5] [--connections 50] [--no-doc]

The same app (benchmarks/apps.py ``page``: 64 KiB of text in one body message, with its length) served
alone, behind ``covet_pipe.builtin.GZip`` and behind ``starlette.middleware.gzip.GZipMiddleware``, at
compression level 9 (both defaults) and 1; one uvicorn each (uvloop + httptools, 1 process, 127.0.0.1),
started and measured as benchmarks/e2e_wrk.py does (its helpers), wrk sending ``Accept-Encoding: gzip``.
Reports the median req/s and the server's CPU per request, covet-pipe's as ratios to Starlette's at the
same level, and writes the "gzip" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402
import e2e_wrk  # noqa: E402

PATH = "/page"
HEADERS = ("Accept-Encoding: gzip",)
CONTENDERS = (
    ("gzip_bare", "the app alone, uncompressed"),
    ("gzip_covet9", "covet-pipe GZip, level 9"),
    ("gzip_starlette9", "Starlette GZipMiddleware, level 9"),
    ("gzip_covet1", "covet-pipe GZip, level 1"),
    ("gzip_starlette1", "Starlette GZipMiddleware, level 1"),
)


class Server(e2e_wrk.Server):
    """e2e_wrk's server, checked with a gzip GET of the page: the body must decompress to the page."""

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn for {self.app} exited with {self.proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", PATH, headers={"Accept-Encoding": "gzip"})
                r = conn.getresponse()
                body = r.read()
                conn.close()
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn for {self.app} did not answer on port {self.port}") from None
                time.sleep(0.1)
                continue
            encoded = r.getheader("content-encoding") == "gzip"
            if r.status != 200 or (gzip.decompress(body) if encoded else body) != apps.PAGE or \
                    encoded == (self.app == "gzip_bare"):
                raise RuntimeError(f"{self.app}: GET {PATH} answered {r.status} {body[:80]!r}")
            self.wire_bytes = len(body)
            return

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk per server before the rounds")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("at least 3 rounds (DESIGN.md: median of >= 3 interleaved rounds)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk (make bench-gzip does it)")
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split()
    wrk_version = "wrk " + (wrk_version[1] if len(wrk_version) > 1 else "?")

    servers: dict[str, Server] = {}
    try:
        for name, _ in CONTENDERS:
            servers[name] = Server(name)
        for name, _ in CONTENDERS:
            e2e_wrk.wrk(servers[name].url(), args.warmup, args.connections, args.threads, headers=HEADERS)
        results = e2e_wrk.interleaved_rounds(
            servers,
            args.rounds,
            lambda srv: e2e_wrk.measure(srv, args.duration, args.connections, args.threads, headers=HEADERS),
            lambda rnd, name, r: print(f"round {rnd + 1}/{args.rounds} {name:16s} {r['rps']:>9,.0f} req/s  "
                                       f"{r['cpu_us']:7.1f} µs CPU/request", flush=True))
    finally:
        for s in servers.values():
            s.stop()

    rps = {n: statistics.median(r["rps"] for r in rs) for n, rs in results.items()}
    cpu = {n: statistics.median(r["cpu_us"] for r in rs) for n, rs in results.items()}
    size = {n: servers[n].wire_bytes for n in servers}
    lines = ["| app | bytes on the wire | median req/s | covet-pipe ÷ Starlette | server CPU µs/request | "
             "Starlette CPU ÷ covet-pipe's | req/s per round |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, label in CONTENDERS:
        per = ", ".join(f"{r['rps']:,.0f}" for r in results[name])
        peer = name.replace("covet", "starlette")
        ratio = f"{rps[name] / rps[peer]:.3f}" if peer != name else ""
        cpu_ratio = f"{cpu[peer] / cpu[name]:.3f}" if peer != name else ""
        lines.append(f"| {label} | {size[name]:,} | {rps[name]:,.0f} | {ratio} | {cpu[name]:.1f} | "
                     f"{cpu_ratio} | {per} |")
    notes = []
    for level in (9, 1):
        c, s = f"gzip_covet{level}", f"gzip_starlette{level}"
        notes.append(f"- level {level}: covet-pipe GZip serves {rps[c] / rps[s]:.3f}× Starlette GZipMiddleware's "
                     f"requests/s, at {cpu[c] - cpu[s]:+.1f} µs of server CPU per request "
                     f"({cpu[c]:.1f} vs {cpu[s]:.1f}; compression itself: "
                     f"{cpu[c] - cpu['gzip_bare']:.1f} µs over the uncompressed app); the same bytes on the wire "
                     f"({size[c]:,} vs {size[s]:,}).")
    wrk_cmd = (f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
               f"-H 'Accept-Encoding: gzip' http://127.0.0.1:<port>{PATH}")
    server_cmd = " ".join(e2e_wrk.uvicorn_cmd("<app>", 0)[1:]).replace(" --port 0", " --port <free>") \
        .replace(HERE, "benchmarks")
    body = f"""## GZip: covet-pipe's GZip plugin vs Starlette's GZipMiddleware under wrk (`benchmarks/bench_gzip.py`)

{_docs.machine()}; {_docs.versions("uvicorn", "uvloop", "httptools", "starlette")}; {wrk_version}.
Command: `make bench-gzip` = `python benchmarks/bench_gzip.py --rounds {args.rounds} --duration {args.duration:g}`.
Server: `python {server_cmd}` (one process; apps `gzip_*` of benchmarks/apps.py). The app answers
{len(apps.PAGE):,} bytes of text in one body message with its Content-Length; both middlewares compress it with
`zlib.compressobj(level, DEFLATED, 31)` and send the compressed length. Load: `{wrk_cmd}` after a
{args.warmup:g} s warm-up per server; {args.rounds} interleaved rounds (order rotated), medians. wrk and the
server share the machine's {os.cpu_count()} CPUs; CPU per request from the server's /proc/<pid>/stat.

{chr(10).join(lines)}

{chr(10).join(notes)}
"""
    print()
    print(body)
    if not args.no_doc:
        print("wrote", _docs.update_section("gzip", body))


if __name__ == "__main__":
    main()
