"""The sandboxed hook call against a raw socketpair ping-pong of the same size, in one run, on uvloop.

Contenders (DESIGN.md section 3, "How we measure": unpinned, the host on its event loop, the same
message size):

  raw       the host (asyncio streams on uvloop) and a child ``python -I`` echo loop doing blocking
            recv/send of 4-byte-length-prefixed frames over a socketpair; the host sends the bytes of
            the sandbox's request frame for benchmarks/apps.py's request (10 headers) and the child
            answers with a frame as long as the helper's reply
  channel   ``Supervisor.call("request", ...)`` with that request's payload, through the real,
            confined helper (no proxy, no Request object): the IPC path alone
  sandbox   the proxy's ``process_request(request, ctx)`` of a no-op sandboxed plugin
            (benchmarks/sandbox_plugin/noop.py), as the core calls it: payload built from the Request,
            IPC, reply validated; also with ``sandbox_pool_size=2``

Latency: sequential calls, ``--rounds`` interleaved rounds of ``--calls`` each after a warm-up; p50 and
p99 over all rounds. Throughput: ``--total`` calls with ``--inflight`` in flight (``asyncio.gather`` in
batches), best of the rounds.

    python benchmarks/bench_sandbox.py                # also rewrites the sandbox section of docs/benchmarks.md
    python benchmarks/bench_sandbox.py --profile      # adds a cProfile of the host side of the 64-in-flight run
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import json
import os
import pstats
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import uvloop  # noqa: E402

import _docs  # noqa: E402
import apps  # noqa: E402
from covet_pipe import PluginConfig, PluginManager  # noqa: E402
from covet_pipe._core import Request, make_request_context  # noqa: E402
from covet_pipe.sandbox.channel import encode_frame  # noqa: E402

PLUGIN = os.path.join(HERE, "sandbox_plugin", "noop.py")
#: DESIGN.md section 3
RATIO_MAX = 1.3
CALLS_PER_S_MIN = 30_000

ECHO = r"""
import socket, struct, sys
s = socket.socket(fileno=int(sys.argv[1]))
s.setblocking(True)
reply = bytes.fromhex(sys.argv[2])
unpack = struct.Struct(">I").unpack
def read_exact(n):
    chunks = []
    while n:
        c = s.recv(min(n, 1 << 20))
        if not c:
            sys.exit(0)
        chunks.append(c)
        n -= len(c)
    return b"".join(chunks)
while True:
    (size,) = unpack(read_exact(4))
    read_exact(size)
    s.sendall(reply)
"""


def request_payload(request: Request, ctx: Any) -> dict[str, Any]:
    """What the proxy sends for a request hook (kept in step with proxy._process_request)."""
    return {"type": request.type, "method": request.method, "path": request.path,
            "query": request.query_string, "headers": request.headers.raw,
            "client": list(request.client) if request.client else None, "scheme": request.scheme,
            "protocol": ctx.protocol}


def new_request() -> tuple[Request, Any]:
    request = Request(apps.http_scope())
    return request, make_request_context(request, "http", None)


class RawPeer:
    """The raw contender: an echo child over a socketpair, the host on asyncio streams."""

    def __init__(self, frame: bytes, reply_size: int) -> None:
        self.frame = frame
        self.reply = struct.pack(">I", reply_size - 4) + b"\x00" * (reply_size - 4)
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.proc = subprocess.Popen([sys.executable, "-I", "-c", ECHO, str(child.fileno()), self.reply.hex()],
                                     pass_fds=(child.fileno(),), env={}, stdin=subprocess.DEVNULL)
        child.close()
        self.reader, self.writer = await asyncio.open_unix_connection(sock=parent)
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        unpack = struct.Struct(">I").unpack
        while True:
            (size,) = unpack(await self.reader.readexactly(4))
            await self.reader.readexactly(size)
            self.waiters.popleft().set_result(None)

    async def call(self) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self.writer.write(self.frame)
        await fut

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
        await asyncio.sleep(0.05)       # the child reads the end of its socket and exits
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


async def latencies(call: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        await call()
        out.append((clock() - t0) / 1000.0)
    return out


async def throughput(call: Callable[[], Awaitable[Any]], total: int, inflight: int) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < total:
        batch = min(inflight, total - done)
        await asyncio.gather(*(call() for _ in range(batch)))
        done += batch
    return total / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100.0 * (len(s) - 1))))]


async def load(pool: int) -> tuple[PluginManager, Any]:
    manager = PluginManager(PluginConfig(sandbox_pool_size=pool))
    await manager.load_plugin_from_path(PLUGIN, sandbox=True)
    await manager.initialize_all()
    return manager, manager.get_plugin("noop")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    request, ctx = new_request()
    payload = request_payload(request, ctx)
    manager, proxy = await load(1)
    manager2, proxy2 = await load(2)
    sup = proxy._sup
    # The exact frames of one sandboxed request hook call, to size the raw contender.
    _, sample = await sup.call("request", req=payload, keep=False)
    request_frame = encode_frame({"id": 1, "op": "request", "req": payload, "keep": False})
    reply_frame = encode_frame({k: v for k, v in {"id": sample.id, "ok": sample.ok, "action": sample.action}.items()})
    raw = RawPeer(request_frame, len(reply_frame))
    await raw.start()

    async def channel_call() -> None:
        await sup.call("request", req=payload, keep=False)

    def proxied(p: Any) -> Callable[[], Awaitable[Any]]:
        # One Request and context for every call: the core builds those per request whether or not a
        # plugin is sandboxed; what is measured is the proxy and the IPC.
        r, c = new_request()
        hook = p.process_request

        async def call() -> None:
            if await hook(r, c) is not None:
                raise RuntimeError("the no-op sandboxed plugin did not continue")
        return call

    contenders: dict[str, Callable[[], Awaitable[Any]]] = {
        "raw": raw.call, "channel": channel_call, "sandbox": proxied(proxy), "sandbox-pool2": proxied(proxy2)}
    lat: dict[str, list[float]] = {k: [] for k in contenders}
    thr: dict[str, list[float]] = {k: [] for k in contenders}
    for name, call in contenders.items():                       # warm-up
        await latencies(call, args.warmup)
        await throughput(call, min(args.total, 2000), args.inflight)
    round_p50: dict[str, list[float]] = {k: [] for k in contenders}
    cpu = {"host": 0.0, "helper": 0.0, "calls": 0}
    for _ in range(args.rounds):                                # interleaved rounds
        for name, call in contenders.items():
            samples = await latencies(call, args.calls)
            lat[name] += samples
            round_p50[name].append(pct(samples, 50))
        for name, call in contenders.items():
            if name == "sandbox":       # where the CPU time of a call goes, host and helper
                host0, helper0 = time.process_time(), _cpu_seconds(sup)
            thr[name].append(await throughput(call, args.total, args.inflight))
            if name == "sandbox":
                cpu["host"] += time.process_time() - host0
                cpu["helper"] += (_cpu_seconds(sup) or 0.0) - (helper0 or 0.0)
                cpu["calls"] += args.total
    profile = None
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        await throughput(contenders["sandbox"], args.total, args.inflight)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(18)
        profile = buf.getvalue()
    await raw.close()
    await manager.shutdown_all()
    await manager2.shutdown_all()
    return {
        "sizes": {"request_frame": len(request_frame), "reply_frame": len(reply_frame)},
        "latency": {k: {"p50": pct(v, 50), "p99": pct(v, 99), "mean": statistics.fmean(v), "n": len(v),
                        "deciles": [round(pct(v, q), 1) for q in (1, 10, 20, 30, 40, 50, 60, 70, 80, 90)]}
                    for k, v in lat.items()},
        "throughput": {k: {"best": max(v), "median": statistics.median(v), "rounds": v} for k, v in thr.items()},
        "round_p50": round_p50,
        "cpu_us_per_call": {"host": cpu["host"] / cpu["calls"] * 1e6, "helper": cpu["helper"] / cpu["calls"] * 1e6},
        "profile": profile,
    }


def _cpu_seconds(sup: Any) -> float | None:
    try:
        [h] = sup.helpers
        with open(f"/proc/{h.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, TypeError):
        return None


#: before/after of the helper- and host-side changes of 2026-11-25, same machine, 3 runs each, with the
#: earlier harness (a new Request per call): kept in the report as the record of what they bought
HISTORY = (
    "History (2026-11-25, this machine, 3 runs each, a new `Request` per call): importing `_core` once in the "
    "helper instead of per call, one buffered `recv()` per frame in the helper, and one timer per call "
    "instead of `asyncio.wait_for` on the host took the p50 ratio from 1.15-1.28× to 1.06-1.10×, the "
    "64-in-flight throughput from 70,200-71,600 to 80,200-81,500 calls/s, helper CPU per call from "
    "11.0-11.5 µs to 6.3-7.0 µs and host CPU from 14.2-15.1 µs to 12.4-12.6 µs."
)


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    lat, thr, cpu = res["latency"], res["throughput"], res["cpu_us_per_call"]
    ratio = lat["sandbox"]["p50"] / lat["raw"]["p50"]
    per_round = ", ".join(f"{s / r:.2f}" for s, r in zip(res["round_p50"]["sandbox"], res["round_p50"]["raw"]))
    ratio_ch = lat["channel"]["p50"] / lat["raw"]["p50"]
    best = thr["sandbox"]["best"]
    rows = [
        ("raw socketpair ping-pong (python -I echo child)", "raw"),
        ("sandbox channel only (`Supervisor.call`)", "channel"),
        ("sandboxed hook call (proxy `process_request`)", "sandbox"),
        ("sandboxed hook call, `sandbox_pool_size=2`", "sandbox-pool2"),
    ]
    lines = [
        "## Sandboxed hook call (`benchmarks/bench_sandbox.py`)",
        "",
        f"{_docs.machine()}; {_docs.versions('uvloop', 'msgspec')};",
        f"unpinned; {args.rounds} interleaved rounds of {args.calls} sequential calls per contender after "
        f"{args.warmup} warm-up calls; throughput: {args.total:,} calls with {args.inflight} in flight "
        "(`asyncio.gather` batches), best of the rounds.",
        f"Command: `{_docs.command()}` (`make bench-sandbox`).",
        "",
        f"The request is benchmarks/apps.py's GET with 10 headers: a {res['sizes']['request_frame']}-byte request "
        f"frame and a {res['sizes']['reply_frame']}-byte reply frame, the same bytes for the raw contender. The "
        "host runs on uvloop; the helper is fully confined (seccomp, Landlock, netns, capabilities dropped, "
        "cgroup) and answers one call at a time on one thread.",
        "",
        "| contender | p50 µs | p99 µs | mean µs | calls/s, 64 in flight (best) | median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        lines.append(f"| {label} | {lat[key]['p50']:.1f} | {lat[key]['p99']:.1f} | {lat[key]['mean']:.1f} | "
                     f"{thr[key]['best']:,.0f} | {thr[key]['median']:,.0f} |")
    lines += [
        "",
        "Targets (DESIGN.md section 3):",
        "",
        f"- {'MET' if ratio <= RATIO_MAX else 'MISSED'}: sandboxed hook call p50 {lat['sandbox']['p50']:.1f} µs = "
        f"**{ratio:.2f}×** the raw round trip's {lat['raw']['p50']:.1f} µs (target ≤ {RATIO_MAX}×; "
        f"the channel alone: {ratio_ch:.2f}×; per round: {per_round})",
        f"- {'MET' if best >= CALLS_PER_S_MIN else 'MISSED'}: **{best:,.0f} calls/s** with {args.inflight} in flight, "
        f"one helper (target ≥ {CALLS_PER_S_MIN:,}); with two helpers {thr['sandbox-pool2']['best']:,.0f}; the raw "
        f"ping-pong itself reaches {thr['raw']['best']:,.0f}",
    ]
    host_busy = best * cpu["host"] / 1e6
    helper_busy = best * cpu["helper"] / 1e6
    extra = lat["sandbox"]["p50"] - lat["raw"]["p50"]
    lines += [
        "",
        "What limits the figures:",
        "",
        f"- **Latency: waking the other vCPU.** Unpinned, each side sleeps in `epoll_wait`/`recv` between calls, "
        f"so a round trip is two cross-CPU wake-ups: the raw ping-pong, with a few µs of work on each side, "
        f"takes {lat['raw']['p50']:.0f} µs p50 (DESIGN.md: 7 µs pinned). The sandbox adds {extra:.1f} µs at p50: "
        "the proxy's payload dict and msgpack encode, the helper's decode, scope, `Request` and context, the "
        "hook, its reply, and the host's reply decode and validation. The distribution is bimodal on this VM "
        "(a fast mode near 30 µs when the peer's vCPU is still awake), which is why single rounds scatter.",
        f"- **Throughput: the host's event-loop thread.** At {args.inflight} in flight a sandboxed call costs "
        f"{cpu['host']:.1f} µs of host CPU (proxy, frame encode, one `send()` per frame through "
        "`StreamWriter.write`, a timer, two `readexactly` per reply, the `Reply` decode, waking the caller; "
        f"the benchmark's own `gather` tasks included) and {cpu['helper']:.1f} µs in the helper (one thread; "
        f"one `recv()` often brings several frames). At {best:,.0f} calls/s that is "
        f"{'all' if host_busy >= 0.95 else f'{host_busy:.0%}'} of a CPU on the host ({host_busy:.2f} CPU-seconds "
        f"per second) and {helper_busy:.0%} in the helper: the host's thread is the ceiling, so a second "
        "helper cannot add calls per second here (and on 2 vCPUs three busy processes share two CPUs); "
        "`sandbox_pool_size` pays off when hooks spend time of their own (tests/sandbox/test_served.py: four "
        "0.4 s hooks take 0.8 s with two helpers instead of 1.6 s).",
        "",
        HISTORY,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000, help="sequential calls per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--total", type=int, default=20_000, help="calls per throughput run")
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--profile", action="store_true", help="cProfile the host during one throughput run")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    ap.add_argument("-o", "--output", help="write the raw results as JSON here")
    args = ap.parse_args()
    res = uvloop.run(run(args))
    text = report(res, args)
    print(text)
    if res["profile"]:
        print(res["profile"])
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in res.items() if k != "profile"}, f, indent=1)
    if not args.no_doc:
        print("wrote", _docs.update_section("sandbox", text))


if __name__ == "__main__":
    main()
