"""Per-layer cost of covet-pipe against its peers, in one pyperf run.

One ASGI HTTP request (a fixed scope with 10 headers, a no-op ``receive``, a ``send`` that does
nothing) through N = 0, 1, 5, 10, 20 no-op layers of:

  covet-sync      covet-pipe, N MiddlewarePlugin with sync process_request + process_response
  covet-async     covet-pipe, N MiddlewarePlugin with ``async def`` hooks
  covet-callnext  covet-pipe, N call_next-style plugins: ``return await call_next(request)``
  starlette-asgi  N Starlette pure-ASGI middleware wrapping ``send`` with a closure (the docs' pattern)
  starlette-base  N Starlette ``BaseHTTPMiddleware`` (needs an event loop: uvloop, one batch per value)
  pluggy          one ASGI layer calling pm.hook.process_request / process_response, N hookimpls each
  falcon-async    falcon.asgi.App with N async process_request/process_response middleware
  floor-sync      a bare Cython onion calling the same sync hooks (benchmarks/_bareloop.pyx)
  floor-async     a bare Cython onion awaiting the same async hooks' coroutines

plus ``bare-app`` (the inner app alone). Everything but starlette-base is driven without an event
loop (``coro.send(None)`` must raise StopIteration: nothing in these paths really suspends), so loop
overhead does not drown the figures; each case is checked to deliver the response exactly once
before it is timed.

    python benchmarks/bench_layers.py --fast -o benchmarks/results/layers.json
    python benchmarks/report.py benchmarks/results/layers.json      # table + docs/benchmarks.md

``--only covet-sync,starlette-asgi`` and ``--layers 0,1,5`` narrow the run.
"""

from __future__ import annotations

import asyncio
import os
import sys
from time import perf_counter
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pyperf  # noqa: E402

import apps  # noqa: E402

LAYERS = (0, 1, 5, 10, 20)
CONTENDERS = ("covet-sync", "covet-async", "covet-callnext", "starlette-asgi", "starlette-base", "pluggy",
              "falcon-async", "floor-sync", "floor-async")
#: contenders driven on an event loop (the rest are stepped with coro.send(None))
ON_LOOP = {"starlette-base"}


def _bareloop() -> Any:
    import pyximport

    build = os.path.join(HERE, "results", "pyxbld")
    pyximport.install(build_dir=build, language_level=3, inplace=False)
    import _bareloop
    return _bareloop


def build(contender: str, n: int) -> Any:
    """The ASGI app for *contender* with *n* layers."""
    hello = apps.hello
    if contender == "bare-app":
        return hello
    if contender == "covet-sync":
        return apps.covet(hello, apps.sync_plugins(n))
    if contender == "covet-async":
        return apps.covet(hello, apps.async_plugins(n))
    if contender == "covet-callnext":
        return apps.covet(hello, apps.call_next_plugins(n))
    if contender == "starlette-asgi":
        return apps.starlette_asgi(hello, n)
    if contender == "starlette-base":
        return apps.starlette_base(hello, n)
    if contender == "pluggy":
        return apps.pluggy_app(hello, n)
    if contender == "falcon-async":
        return apps.falcon_app(n)
    if contender in ("floor-sync", "floor-async"):
        bl = _bareloop()
        ps = apps.sync_plugins(n) if contender == "floor-sync" else apps.async_plugins(n)
        cls = bl.BareSync if contender == "floor-sync" else bl.BareAsync
        return cls(hello, [p.process_request for p in ps], [p.process_response for p in ps])
    raise ValueError(f"unknown contender {contender!r}; known: bare-app, {', '.join(CONTENDERS)}")


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    return None


class Case:
    """One benchmark: builds its app on first use (only in the worker that runs it) and checks it."""

    def __init__(self, contender: str, n: int) -> None:
        self.contender = contender
        self.n = n
        self.app: Any = None
        self.loop: Any = None

    def _setup(self) -> None:
        self.app = build(self.contender, self.n)
        if self.contender in ON_LOOP:
            import uvloop
            self.loop = uvloop.new_event_loop()
        self._check()

    def _check(self) -> None:
        got: list[dict] = []

        async def send(message: dict) -> None:
            got.append(message)

        coro = self.app(apps.http_scope(), _receive, send)
        if self.loop is not None:
            self.loop.run_until_complete(coro)
        else:
            try:
                coro.send(None)
            except StopIteration:
                pass
            else:
                coro.close()
                raise RuntimeError(f"{self.contender} N={self.n}: the request suspended; "
                                   "it cannot be stepped without an event loop")
        # One response start, then the body (BaseHTTPMiddleware re-chunks it: "Hello" + b"" end).
        starts = [m for m in got if m["type"] == "http.response.start"]
        bodies = [m for m in got if m["type"] == "http.response.body"]
        if len(starts) != 1 or starts[0]["status"] != 200 or got[0] is not starts[0] \
                or len(bodies) != len(got) - 1 or b"".join(m.get("body", b"") for m in bodies) != apps.BODY \
                or bodies[-1].get("more_body", False):
            raise RuntimeError(f"{self.contender} N={self.n}: the app did not answer once: {got!r}")
        if self.contender.startswith("covet-"):
            calls = [p["stats"]["calls"] for p in self.app.manager.list_plugins()]
            if calls != [1] * self.n:
                raise RuntimeError(f"{self.contender} N={self.n}: the plugins' hooks did not all run: {calls}")

    def __call__(self, loops: int) -> float:
        if self.app is None:
            self._setup()
        app = self.app
        scope = apps.http_scope()
        receive = _receive
        send = _send
        if self.loop is not None:
            async def batch() -> float:
                t0 = perf_counter()
                for _ in range(loops):
                    await app(scope, receive, send)
                return perf_counter() - t0
            return self.loop.run_until_complete(batch())
        rng = range(loops)
        t0 = perf_counter()
        for _ in rng:
            try:
                app(scope, receive, send).send(None)
            except StopIteration:
                pass
        return perf_counter() - t0


def _add_args(cmd: list[str], args: Any) -> None:
    cmd.extend(("--only", args.only, "--layers", args.layers))


def main() -> None:
    runner = pyperf.Runner(add_cmdline_args=_add_args)
    runner.argparser.add_argument("--only", default=",".join(CONTENDERS),
                                  help="comma-separated contenders (default: all)")
    runner.argparser.add_argument("--layers", default=",".join(map(str, LAYERS)),
                                  help="comma-separated layer counts (default: 0,1,5,10,20)")
    args = runner.parse_args()
    only = [c for c in args.only.split(",") if c]
    unknown = sorted(set(only) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"unknown contender(s) {', '.join(unknown)}; known: {', '.join(CONTENDERS)}")
    layers = [int(x) for x in args.layers.split(",") if x]
    if "floor-sync" in only or "floor-async" in only:
        if not args.worker:
            _bareloop()  # compile once, before the workers start
    runner.metadata["covet_bench_layers"] = ",".join(map(str, layers))
    runner.bench_time_func("bare-app", Case("bare-app", 0),
                           metadata={"contender": "bare-app", "layers": 0})
    for contender in only:
        for n in layers:
            runner.bench_time_func(f"{contender} N={n}", Case(contender, n),
                                   metadata={"contender": contender, "layers": n})


if __name__ == "__main__":
    main()
