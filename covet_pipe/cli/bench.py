"""``covet-pipe bench``: the per-layer pyperf suite (``benchmarks/bench_layers.py``) and its table.

The suite lives in a source checkout's ``benchmarks/`` folder (it is not installed with the
package): found beside the package, or named with ``--benchmarks DIR``. Progress goes to stderr:
a bar on a terminal, one line per benchmark otherwise; the table (``benchmarks/report.py``) goes to
stdout. ``--fast`` is pyperf's short run; ``--smoke`` takes one value per benchmark (it proves the
suite runs; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from covet_pipe.cli.errors import EXIT_OK, FailedError, UsageError

__all__ = ["CONTENDERS", "LAYERS", "Progress", "add_bench", "run_bench"]

#: bench_layers.py's contenders and layer counts (its defaults)
CONTENDERS = ("covet-sync", "covet-async", "covet-callnext", "starlette-asgi", "starlette-base", "pluggy",
              "falcon-async", "floor-sync", "floor-async")
LAYERS = (0, 1, 5, 10, 20)
BENCH_ENV = "COVET_PIPE_BENCHMARKS"


class Progress:
    """Counts finished benchmarks on *out*: a redrawn bar on a terminal, a plain line each otherwise."""

    def __init__(self, total: int, out: IO[str], *, tty: bool | None = None, width: int = 30) -> None:
        self.total = total
        self.done = 0
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.width = width
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        self.done = min(self.total, self.done + 1)
        elapsed = time.monotonic() - self.started
        if self.tty:
            filled = self.width * self.done // max(1, self.total)
            bar = "#" * filled + "." * (self.width - filled)
            self.out.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f} s  {what[:40]:<40}")
            if self.done == self.total:
                self.out.write("\n")
        else:
            self.out.write(f"bench {self.done}/{self.total} ({elapsed:.0f} s): {what}\n")
        self.out.flush()


def _suite(given: str | None) -> Path:
    import covet_pipe
    folder = Path(given or os.environ.get(BENCH_ENV) or Path(covet_pipe.__file__).resolve().parent.parent
                  / "benchmarks")
    if not (folder / "bench_layers.py").is_file() or not (folder / "report.py").is_file():
        raise UsageError(f"no benchmark suite in {folder} (bench_layers.py, report.py); covet-pipe bench runs "
                         "the one in a source checkout: give --benchmarks /path/to/covet-pipe/benchmarks "
                         f"or set {BENCH_ENV}")
    return folder


def _names(value: str, known: tuple[Any, ...], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in {str(k) for k in known}]
    if not names or unknown:
        raise UsageError(f"--{what} {value}: expected a comma-separated list of {', '.join(map(str, known))}")
    return names


def run_bench(args: argparse.Namespace) -> int:
    suite = _suite(args.benchmarks)
    only = _names(args.only, CONTENDERS, "only")
    layers = _names(args.layers, LAYERS, "layers")
    names = ["bare-app"] + [f"{c} N={n}" for c in only for n in layers]
    if importlib.util.find_spec("pyperf") is None:  # the suite's own import: say so before it starts
        raise UsageError("covet-pipe bench needs pyperf (and the suite's peers): pip install "
                         "'covet-pipe[dev]' in a source checkout")
    with tempfile.TemporaryDirectory(prefix="covet-bench-") as tmp:
        out = args.output or os.path.join(tmp, "layers.json")
        if os.path.exists(out):
            os.unlink(out)          # pyperf refuses to overwrite
        cmd = [sys.executable, str(suite / "bench_layers.py"), "-o", out, "--only", ",".join(only),
               "--layers", ",".join(layers)]
        if args.smoke:
            cmd.append("--debug-single-value")
        elif args.fast:
            cmd.append("--fast")
        progress = Progress(len(names), sys.stderr)
        log = _run_suite(cmd, suite, names, progress)
        if not os.path.exists(out):
            raise FailedError(f"the suite wrote no results (exit above); its output:\n{log}")
        report = subprocess.run([sys.executable, str(suite / "report.py"), out, "--no-doc"],
                                cwd=suite, capture_output=True, text=True)
        if report.returncode != 0:
            raise FailedError(f"benchmarks/report.py failed:\n{report.stderr[-3000:]}")
        sys.stdout.write(report.stdout)
        if args.output:
            print(f"pyperf results: {args.output}")
    return EXIT_OK


def _run_suite(cmd: list[str], suite: Path, names: list[str], progress: Progress) -> str:
    """Run the suite, stepping *progress* as each benchmark's result line comes; its output."""
    lines: list[str] = []
    pending = list(names)
    with subprocess.Popen(cmd, cwd=suite, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            name = next((n for n in pending if line.startswith(n + ":")), None)
            if name is not None:
                pending.remove(name)
                progress.step(line.strip())
        code = proc.wait()
    if code != 0:
        raise FailedError(f"the benchmark suite exited {code}:\n{''.join(lines)[-3000:]}")
    return "".join(lines)


def add_bench(sub: Any) -> None:
    """The ``bench`` subcommand."""
    bench = sub.add_parser(
        "bench", help="run the per-layer benchmark suite (pyperf) and print its table",
        description="Run benchmarks/bench_layers.py (one ASGI request through N no-op layers of covet-pipe "
                    "and its peers) and print benchmarks/report.py's table. Needs a source checkout "
                    "and the dev extra (pyperf, starlette, falcon, pluggy).",
    )
    speed = bench.add_mutually_exclusive_group()
    speed.add_argument("--fast", action="store_true", help="pyperf's short run (fewer processes and values)")
    speed.add_argument("--smoke", action="store_true",
                       help="one value per benchmark: checks the suite runs (figures mean nothing)")
    bench.add_argument("--only", default=",".join(CONTENDERS), metavar="LIST",
                       help="comma-separated contenders (default: all)")
    bench.add_argument("--layers", default=",".join(map(str, LAYERS)), metavar="LIST",
                       help="comma-separated layer counts (default: 0,1,5,10,20)")
    bench.add_argument("-o", "--output", metavar="JSON", help="keep pyperf's results in this file")
    bench.add_argument("--benchmarks", metavar="DIR",
                       help=f"the suite's folder (default: ${BENCH_ENV}, else benchmarks/ beside the package)")
    bench.set_defaults(run=run_bench)
