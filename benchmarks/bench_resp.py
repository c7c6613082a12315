"""redis-benchmark against covet-pipe's RESP protocol and against a real redis-server, same run.

    python benchmarks/bench_resp.py [--rounds 3] [--requests 200000] [--clients 50] [--pipelines 1,16]
                                    [--tests set,get,incr,mset] [--no-doc]

Servers (127.0.0.1, free ports, one process each):
  redis     ``redis-server --save '' --appendonly no`` (Debian's)
  pure      covet-pipe's listener (uvloop) with RespProtocol + MemoryStorage, no middleware (the fast path:
            commands run straight against the engine)
  noop      the same behind one no-op middleware plugin that lists "resp" (a sync hook)
  noop10    the same behind ten such plugins
Each round runs ``redis-benchmark -t <test> -q -n N -c C -P P`` (for each test and P) against every server, in an
order that rotates per round; a test whose command a server answers ``-ERR unknown command`` (asked once, before
the rounds) is reported "unsupported" for it. The report is the median requests/s per command, the ratio to redis, and the
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
SERVERS = ("redis", "pure", "noop", "noop10")
LABELS = {"redis": "redis-server (C)", "pure": "covet-pipe RESP",
          "noop": "covet-pipe RESP + 1 no-op resp plugin", "noop10": "covet-pipe RESP + 10 no-op resp plugins"}
LINE = re.compile(r"^([A-Z]+)(?: \(10 keys\))?: ([0-9.]+) requests per second", re.M)
#: what redis-benchmark sends for each test, to ask a server whether it knows the command
PROBES = {"set": b"*3\r\n$3\r\nSET\r\n$7\r\n__probe\r\n$1\r\n1\r\n",
          "get": b"*2\r\n$3\r\nGET\r\n$7\r\n__probe\r\n",
          "incr": b"*2\r\n$4\r\nINCR\r\n$7\r\n__probe\r\n",
          "mset": b"*3\r\n$4\r\nMSET\r\n$7\r\n__probe\r\n$1\r\n1\r\n"}


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
    for i in range({"noop": 1, "noop10": 10}.get(mode, 0)):
        manager.register(type(f"NoOp{i}", (NoOp,), {"name": f"noop{i}"})())
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


def supported(server: Server, test: str) -> bool:
    """Whether *server* knows the command of redis-benchmark's *test* (not ``-ERR unknown command``)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(PROBES[test])
        reply = s.recv(256)
    return not reply.startswith(b"-ERR unknown command")


def bench(server: Server, args: argparse.Namespace, pipeline: int,
          tests: list[str]) -> dict[str, tuple[float, float]]:
    """{command: (requests/s, server CPU µs per request)} for one redis-benchmark run of each test."""
    results = {}
    for command in tests:
        before = cpu_ticks(server.proc.pid)
        done = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(server.port), "-t", command,
                               "-q", "-n", str(args.requests), "-c", str(args.clients), "-P", str(pipeline)],
                              capture_output=True, text=True, timeout=600)
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
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pipelines", default="1,16", help="redis-benchmark -P values, comma-separated")
    ap.add_argument("--tests", default="set,get,incr,mset", help="redis-benchmark -t tests, comma-separated")
    ap.add_argument("--servers", default=",".join(SERVERS), help="which of " + ", ".join(SERVERS))
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--serve", nargs=2, metavar=("MODE", "PORT"))
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    if not shutil.which("redis-benchmark"):
        sys.exit("redis-benchmark is not installed: run `make redis`")
    pipelines = [int(p) for p in args.pipelines.split(",")]
    tests = [t for t in args.tests.split(",") if t]
    unknown = [t for t in tests if t not in PROBES]
    if unknown:
        sys.exit(f"--tests: no probe for {', '.join(unknown)}; known: {', '.join(PROBES)}")
    kinds = tuple(k for k in SERVERS if k in args.servers.split(","))
    if "redis" not in kinds:
        sys.exit("--servers: redis is the baseline of every ratio; keep it in the list")
    servers = {k: Server(k) for k in kinds}
    runs: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    try:
        known = {k: [t for t in tests if supported(servers[k], t)] for k in kinds}
        for k in kinds:
            for t in tests:
                if t not in known[k]:
                    print(f"{k}: {t.upper()} unsupported (the server answers -ERR unknown command)", flush=True)
        for r in range(args.rounds):
            order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
            for kind in order:
                for p in pipelines:
                    for command, figures in bench(servers[kind], args, p, known[kind]).items():
                        runs.setdefault((kind, p, command), []).append(figures)
                        print(f"round {r + 1} {kind:6} -P {p:<3} {command}: {figures[0]:>10.0f} req/s "
                              f"{figures[1]:6.1f} µs CPU/req", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    med = {key: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for key, v in runs.items()}
    rows = []
    for p in pipelines:
        for command in (t.upper() for t in tests):
            if ("redis", p, command) not in med:
                continue
            base_rps, base_cpu = med[("redis", p, command)]
            for kind in kinds:
                if (kind, p, command) not in med:
                    rows.append(f"| {p} | {command} | {LABELS[kind]} | unsupported | | | |")
                    continue
                rps, cpu = med[(kind, p, command)]
                rows.append(f"| {p} | {command} | {LABELS[kind]} | {rps:,.0f} | {rps / base_rps:.2f}× | {cpu:.1f} "
                            f"| {cpu / base_cpu if base_cpu else float('nan'):.1f}× |")
    table = "\n".join(["| -P | command | server | req/s (median) | req/s vs redis | server CPU µs/req "
                       "| CPU vs redis |", "|---|---|---|---|---|---|---|", *rows])
    print(table)
    if args.no_doc:
        return
    body = f"""## RESP: redis-benchmark against covet-pipe's Redis protocol and a real redis-server

{_docs.machine()}; {_docs.versions("uvloop", "redis")}.
Command: `{_docs.command()}` (`make bench-resp`): `redis-benchmark -t <test> -q -n {args.requests}
-c {args.clients} -P <P>` for each of {", ".join(tests)}, {args.rounds} interleaved rounds, medians; one server
process each, covet-pipe on its own listener (uvloop) with `MemoryStorage`. "unsupported": the server answers
that command `-ERR unknown command` (asked once before the rounds).

{table}

{NOTES}
"""
    print("wrote", _docs.update_section("resp", body))


#: what the figures mean (kept beside the table by every run)
NOTES = """How a command is served: the compiled parser (`covet_pipe/server/resp/_resp.pyx`) turns one read into
commands; with no plugin listing `resp` and an engine that never suspends (`MemoryStorage`), each runs straight
against the engine (the fast path: no scope, no pipeline call), a run of plain GET/SET, INCR/DECR/INCRBY/DECRBY,
MGET/MSET/MSETNX in a compiled loop (`_resp_direct.pxi`) on the engine's synchronous core (`get_now`/`set_now`,
`incr_by_now`, `get_many_now`/`set_many_now`), the replies of one read in one write. With plugins, each command builds a scope and runs the chain, stepped inline with `send(None)` (no Task);
behind the chain those commands also run on the synchronous core."""


if __name__ == "__main__":
    main()
