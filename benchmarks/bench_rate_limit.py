"""The latency a rate limiter adds to a request: covet-pipe's RateLimit (memory, Redis) beside slowapi.

    python benchmarks/bench_rate_limit.py [--rounds 7] [--requests 3000] [--no-doc]

One Starlette app (one route answering "ok"), called in-process through ASGI (no sockets, so the
limiter's cost is not lost in the server's), one request after another, the client address the key,
a limit far above the rate (every request is allowed: the common path). Variants, interleaved per round
in an order that rotates:

  starlette         the app alone (slowapi's baseline)
  slowapi-memory    slowapi's SlowAPIMiddleware, limits' MemoryStorage (its default fixed window)
  slowapi-redis     the same with limits' RedisStorage (redis-py's blocking client) on the real Redis
  covet             the app wrapped by a covet-pipe Pipeline with no plugin (RateLimit's baseline)
  covet-noop        + a plugin whose request and response hooks do nothing (what any such plugin costs)
  covet-memory      + RateLimit(storage="memory")
  covet-redis       + RateLimit(storage="redis://...") on the same real Redis

Added latency = the variant's median µs per request less its baseline's; the report gives both limiters'
added latency and their ratio (slowapi's / covet-pipe's: above 1, covet-pipe adds less). A real
redis-server is started on a free 127.0.0.1 port. Writes the "ratelimit" section of docs/benchmarks.md.
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
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402

LIMIT = "1000000/second"
VARIANTS = ("starlette", "slowapi-memory", "slowapi-redis", "covet", "covet-noop", "covet-memory", "covet-redis")
BASELINE = {"slowapi-memory": "starlette", "slowapi-redis": "starlette", "covet-noop": "covet",
            "covet-memory": "covet", "covet-redis": "covet"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not installed: run `make redis`")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> Any:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", hello)])


def slowapi_app(storage_uri: str) -> Any:
    from slowapi import Limiter, _rate_limit_exceeded_handler
    from slowapi.errors import RateLimitExceeded
    from slowapi.middleware import SlowAPIMiddleware
    from slowapi.util import get_remote_address

    app = starlette_app()
    app.state.limiter = Limiter(key_func=get_remote_address, default_limits=[LIMIT], storage_uri=storage_uri,
                                headers_enabled=True)
    app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)
    app.add_middleware(SlowAPIMiddleware)
    return app


async def covet_app(storage: str | None) -> tuple[Any, Any]:
    from covet_pipe import MiddlewarePlugin, PluginManager, wrap
    from covet_pipe.builtin import RateLimit

    class NoOp(MiddlewarePlugin):
        name = "noop"
        version = "1.0"
        priority = 300

        def process_request(self, request: Any, ctx: Any) -> None:
            return None

        def process_response(self, response: Any, ctx: Any) -> None:
            return None

    manager = PluginManager()
    if storage == "noop":
        manager.register(NoOp())
    elif storage is not None:
        manager.register(RateLimit(LIMIT, storage=storage))
    await manager.initialize_all()
    return wrap(starlette_app(), manager), manager


SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
         "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [(b"host", b"t")],
         "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def once(app: Any) -> int:
    """One request through *app*; its status."""
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(SCOPE), receive, send)
    return status


async def measure(app: Any, n: int) -> float:
    """Microseconds per request over *n* requests, one after another."""
    t0 = time.perf_counter_ns()
    for _ in range(n):
        if await once(app) != 200:
            raise RuntimeError("a request was not answered 200")
    return (time.perf_counter_ns() - t0) / n / 1000


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, float]:
    covet, m0 = await covet_app(None)
    covet_noop, m3 = await covet_app("noop")
    covet_memory, m1 = await covet_app("memory")
    covet_redis, m2 = await covet_app(redis_url)
    apps = {"starlette": starlette_app(), "slowapi-memory": slowapi_app("memory://"),
            "slowapi-redis": slowapi_app(redis_url), "covet": covet, "covet-noop": covet_noop,
            "covet-memory": covet_memory, "covet-redis": covet_redis}
    for app in apps.values():                     # warm-up: imports, connections, the Lua script
        await measure(app, 200)
    samples: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for v in order:
            samples[v].append(await measure(apps[v], args.requests))
    for m in (m0, m1, m2, m3):
        await m.shutdown_all()
    return {v: statistics.median(s) for v, s in samples.items()}


def report(med: dict[str, float], args: argparse.Namespace) -> str:
    added = {v: med[v] - med[b] for v, b in BASELINE.items()}
    rows = ["| variant | µs per request (median) | added by the limiter (µs) |", "|---|---:|---:|"]
    for v in VARIANTS:
        rows.append(f"| {v} | {med[v]:.1f} | {added[v]:.1f} |" if v in added else f"| {v} | {med[v]:.1f} | — |")

    def ratio(a: str, b: str) -> str:
        return f"{added[a] / added[b]:.1f}×" if added[b] > 0 else "n/a"
    return f"""## Rate limiting: added latency per request, RateLimit vs slowapi (`benchmarks/bench_rate_limit.py`)

{_docs.machine()}; {_docs.versions("slowapi", "limits", "redis", "starlette")}.
Command: `{_docs.command()}` (`make bench-redis`): one Starlette app called in-process through ASGI,
{args.requests} requests one after another per round, {args.rounds} rounds with the variants interleaved, the
client address as key, every request allowed ({LIMIT}); Redis is a real redis-server on 127.0.0.1. The added
latency is a variant's median less its baseline's (the bare app for slowapi, the empty Pipeline for RateLimit).

{chr(10).join(rows)}

In memory slowapi adds {ratio("slowapi-memory", "covet-memory")} RateLimit's latency; against Redis,
{ratio("slowapi-redis", "covet-redis")}. Of RateLimit's {added["covet-memory"]:.1f} µs in memory,
{added["covet-noop"]:.1f} µs is what any plugin with a request and a response hook costs in the pipeline
(covet-noop); the rest is the decision and its five header fields. Most of slowapi's figure is its
`SlowAPIMiddleware`, a Starlette `BaseHTTPMiddleware`. In Redis mode the round trip dominates: RateLimit awaits
one `EVALSHA` (redis-py's asyncio client), which holds across workers and hosts; slowapi's Redis storage goes
through redis-py's synchronous client, blocking the event loop while it waits.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--no-doc", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = parser.parse_args()
    proc, url = start_redis()
    try:
        med = asyncio.run(run(args, url))
    finally:
        proc.terminate()
        proc.wait(10)
    body = report(med, args)
    print(body)
    if not args.no_doc:
        print("wrote", _docs.update_section("ratelimit", body))


if __name__ == "__main__":
    main()
