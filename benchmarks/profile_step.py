"""A small driver for instruction-level profiles of one request path (callgrind, py-spy).

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \\
        python benchmarks/profile_step.py covet-sync 1 20000
    callgrind_annotate --inclusive=yes /tmp/cg.<pid> | head -60

Runs *iterations* requests through bench_layers' *contender* with *N* layers (stepped with
``coro.send(None)``, as the per-layer suite does). Run it twice with different N or iterations and
subtract the totals to get instructions per request or per layer without the start-up.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import apps  # noqa: E402
import bench_layers  # noqa: E402


def main() -> None:
    contender = sys.argv[1] if len(sys.argv) > 1 else "covet-sync"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    case = bench_layers.Case(contender, n)
    case._setup()
    app, scope = case.app, apps.http_scope()
    receive, send = bench_layers._receive, bench_layers._send
    for _ in range(iterations):
        try:
            app(scope, receive, send).send(None)
        except StopIteration:
            pass


if __name__ == "__main__":
    main()
