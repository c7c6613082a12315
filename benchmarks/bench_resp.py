"""redis-benchmark against covet-pipe's RESP protocol and against a real redis-server, same run.

    python benchmarks/bench_resp.py [--rounds 3] [--requests 50000] [--clients 50] [--pipelines 1,16] [--no-doc]

Servers (127.0.0.1, free ports, one process each):
  redis     ``redis-server --save '' --appendonly no`` (Debian's)
  pure      covet-pipe's listener (uvloop) with RespProtocol + MemoryStorage, no middleware
  noop      the same behind one no-op middleware plugin that lists "resp" (a sync hook)
Each round runs ``redis-benchmark -t get,set -q -n N -c C -P P`` (for each P) against every server, in an order that
rotates per round; the report is the median requests/s per command, the ratio to redis, and the
server's CPU time per request (utime + stime from /proc around each run: redis-benchmark and the
server share the cores, so CPU per request is the steadier figure). Writes the "resp" section of
docs/benchmarks.md. ``--serve MODE PORT`` is the server process itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVERS = ("redis", "pure", "noop")
LINE = re.compile(r"^(SET|GET): ([0-9.]+) requests per second", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def serve(mode: str, port: int) -> None:
    """The covet-pipe server process: the listener with RESP on *port* until killed."""

    from covet_pipe import MiddlewarePlugin, PluginManager
    from covet_pipe.builtin import MemoryStorage, RespProtocol
    from covet_pipe.server.config import ServeConfig
    from covet_pipe.server.listener import Listener, new_event_loop

    class NoOp(MiddlewarePlugin):
        name = "noop"
        version = "1.0.0"
        protocols = frozenset({"resp"})

        def process_request(self, request, ctx):  # type: ignore[no-untyped-def]
            return None

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        pass

    manager = PluginManager()
    manager.register(MemoryStorage())
    manager.register(RespProtocol())
    if mode == "noop":
        manager.register(NoOp())
    listener = Listener(app, manager, ServeConfig(port=port, lifespan="off", loop="uvloop"))
    loop = new_event_loop("uvloop")
    loop.run_until_complete(manager.initialize_all())
    loop.run_until_complete(listener.start())
    loop.run_forever()


class Server:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "redis":
            cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--loglevel", "warning"]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--serve", kind, str(self.port)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16) == b"+PONG\r\n":
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not answer PING within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def bench(server: Server, args: argparse.Namespace, pipeline: int) -> dict[str, tuple[float, float]]:
    """{command: (requests/s, server CPU µs per request)} for one redis-benchmark run."""
    results = {}
    for command in ("set", "get"):
        before = cpu_ticks(server.proc.pid)
        done = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", command,
                               "-q", "-n", str(args.requests), "-c", str(args.clients), "-P", str(pipeline)],
                              capture_output=True, text=True, timeout=300)
        cpu = (cpu_ticks(server.proc.pid) - before) / CLK_TCK
        found = dict(LINE.findall(done.stdout.replace("\r", "\n")))
        if done.returncode != 0 or command.upper() not in found:
            raise RuntimeError(f"redis-benchmark against {server.kind} failed: {done.stdout[-500:]} "
                               f"{done.stderr[-500:]}")
        results[command.upper()] = (float(found[command.upper()]), cpu * 1e6 / args.requests)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values, comma-separated")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--serve", nargs=2, metavar=("MODE", "PORT"))
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if not shutil.which("redis-benchmark"):
        sys.exit("redis-benchmark is not installed: run `make redis`")
    pipelines = [int(p) for p in args.pipelines.split(",")]
    servers = {k: Server(k) for k in SERVERS}
    runs: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    try:
        for r in range(args.rounds):
            order = SERVERS[r % 3:] + SERVERS[:r % 3]
            for kind in order:
                for p in pipelines:
                    for command, figures in bench(servers[kind], args, p).items():
                        runs.setdefault((kind, p, command), []).append(figures)
                        print(f"round {r + 1} {kind:5} -P {p:<3} {command}: {figures[0]:>10.0f} req/s "
                              f"{figures[1]:6.1f} µs CPU/req", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    med = {key: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for key, v in runs.items()}
    rows = []
    for p in pipelines:
        for command in ("SET", "GET"):
            base_rps, base_cpu = med[("redis", p, command)]
            for kind, label in (("redis", "redis-server (C)"), ("pure", "covet-pipe RESP"),
                                ("noop", "covet-pipe RESP + 1 no-op resp plugin")):
                rps, cpu = med[(kind, p, command)]
                rows.append(f"| {p} | {command} | {label} | {rps:,.0f} | {rps / base_rps:.2f}× | {cpu:.1f} "
                            f"| {cpu / base_cpu if base_cpu else float('nan'):.1f}× |")
    table = "\n".join(["| -P | command | server | req/s (median) | req/s vs redis | server CPU µs/req "
                       "| CPU vs redis |", "|---|---|---|---|---|---|---|", *rows])
    print(table)
    if args.no_doc:
        return
    body = f"""## RESP: redis-benchmark against covet-pipe's Redis protocol and a real redis-server

{_docs.machine()}; {_docs.versions("uvloop", "redis")}.
Command: `{_docs.command()}` (`make bench-resp`): `redis-benchmark -t get,set -q -n {args.requests}
-c {args.clients} -P <P>`, {args.rounds} interleaved rounds, medians; one server process each,
covet-pipe on its own listener (uvloop) with `MemoryStorage`.

{table}

What limits ours: each command runs the middleware pipeline (a scope dict, the pipeline's call, the
handler coroutine and the storage coroutine, driven inline with `send(None)`, no Task) in Python on
one core, where redis runs a few hundred lines of C; see docs/protocols.md for the profile.
"""
    print("wrote", _docs.update_section("resp", body))


if __name__ == "__main__":
    main()
