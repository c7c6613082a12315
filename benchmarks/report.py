"""Summarise a bench_layers.py run (and optionally the micro suite) and update docs/benchmarks.md.

    python benchmarks/report.py benchmarks/results/layers.json [--micro benchmarks/results/micro.json]

Per contender: the median µs/request for each N, the least-squares slope of those medians over N
(the per-layer cost), the intercept, and the ratio of Starlette's pure-ASGI slope to each slope.
Fixed cost: the covet-sync N = 0 figure (minus the bare app's). Then the DESIGN.md targets, met or not.
Exit status 0 either way: the report says what missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pyperf  # noqa: E402

import _docs  # noqa: E402

ORDER = ("covet-sync", "covet-async", "covet-callnext", "floor-sync", "floor-async", "starlette-asgi",
         "falcon-async", "pluggy", "starlette-base")
LABELS = {
    "covet-sync": "covet-pipe, sync hooks",
    "covet-async": "covet-pipe, async hooks",
    "covet-callnext": "covet-pipe, call_next style (`return await call_next(request)`)",
    "floor-sync": "bare Cython loop, same sync hooks",
    "floor-async": "bare Cython loop awaiting the same coroutines",
    "starlette-asgi": "Starlette pure-ASGI layer wrapping send",
    "falcon-async": "Falcon 4 async hook-style middleware",
    "pluggy": "pluggy (N hookimpls × 2 hooks)",
    "starlette-base": "Starlette BaseHTTPMiddleware (uvloop)",
}
#: DESIGN.md section 3
PER_LAYER_MAX_US = 0.10
VS_STARLETTE_MIN = 6.0
FIXED_MAX_US = 0.6
ASYNC_VS_FLOOR_MAX = 1.25
#: issue 15: a no-op call_next layer
CALL_NEXT_MAX_US = 1.0


def fit(points: list[tuple[int, float]]) -> tuple[float, float, float]:
    """Least squares t = a + b·n over (n, t); returns (slope b, intercept a, r²)."""
    k = len(points)
    mn = sum(n for n, _ in points) / k
    mt = sum(t for _, t in points) / k
    sxx = sum((n - mn) ** 2 for n, _ in points)
    sxy = sum((n - mn) * (t - mt) for n, t in points)
    b = sxy / sxx if sxx else 0.0
    a = mt - b * mn
    ss = sum((t - mt) ** 2 for _, t in points)
    res = sum((t - a - b * n) ** 2 for n, t in points)
    return b, a, (1 - res / ss) if ss else 1.0


def load(path: str) -> tuple[dict[str, dict[int, float]], dict[str, float], float, dict]:
    suite = pyperf.BenchmarkSuite.load(path)
    med: dict[str, dict[int, float]] = {}
    spread: dict[str, float] = {}
    bare = float("nan")
    meta: dict = {}
    for bench in suite.get_benchmarks():
        md = bench.get_metadata()
        contender, n = md.get("contender"), md.get("layers")
        if contender is None:
            contender, _, rest = bench.get_name().partition(" N=")
            n = int(rest or 0)
        m = bench.median() * 1e6
        if contender == "bare-app":
            bare = m
            continue
        med.setdefault(contender, {})[int(n)] = m
        runs = [r for r in bench.get_runs() if r.values]
        meta["covet_runs"] = (f"{len(runs)} pyperf worker processes × {len(runs[0].values) if runs else 0}"
                              " values per benchmark (plus a calibration run)")
        if bench.get_nvalue() > 1:
            spread[f"{contender} N={n}"] = bench.stdev() * 1e6 / m
    return med, spread, bare, meta


def fmt(x: float, digits: int = 3) -> str:
    if x != x:  # nan
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def layers_report(path: str) -> tuple[str, list[str]]:
    med, spread, bare, meta = load(path)
    ns = sorted({n for d in med.values() for n in d})
    stats: dict[str, tuple[float, float, float]] = {}
    for c, d in med.items():
        pts = sorted(d.items())
        stats[c] = fit(pts) if len(pts) >= 2 else (float("nan"), float("nan"), float("nan"))
    st = stats.get("starlette-asgi", (float("nan"),))[0]

    lines = ["| contender | " + " | ".join(f"N={n}" for n in ns)
             + " | per layer (slope) | intercept | r² | Starlette layer ÷ this |",
             "|---|" + "---:|" * len(ns) + "---:|---:|---:|---:|"]
    for c in [c for c in ORDER if c in med] + sorted(set(med) - set(ORDER)):
        b, a, r2 = stats[c]
        row = [LABELS.get(c, c)] + [fmt(med[c].get(n, float("nan"))) for n in ns]
        row += [f"**{fmt(b)}**", fmt(a), f"{r2:.3f}", f"{st / b:.1f}×" if b > 0 and st == st else "–"]
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)

    verdicts: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        verdicts.append(f"- {'MET' if ok else 'MISSED'}: {text}")

    cs = stats.get("covet-sync")
    c0 = med.get("covet-sync", {}).get(0)
    if cs:
        b = cs[0]
        verdict(b <= PER_LAYER_MAX_US,
                f"per sync plugin layer (request + response hook) {fmt(b)} µs "
                f"(target ≤ {PER_LAYER_MAX_US} µs; margin {fmt(PER_LAYER_MAX_US - b)} µs)")
        if st == st:
            verdict(st / b >= VS_STARLETTE_MIN,
                    f"{st / b:.2f}× below a Starlette send-wrapping layer ({fmt(st)} µs) "
                    f"(target ≥ {VS_STARLETTE_MIN:g}×)")
        ge1 = sorted((n, t) for n, t in med["covet-sync"].items() if n >= 1)
        if len(ge1) >= 2:
            b1, a1, _ = fit(ge1)
            verdicts.append(f"- note: over N ≥ 1 only, the covet-sync slope is {fmt(b1)} µs/layer "
                            f"({st / b1:.1f}× below Starlette); the fit's intercept there is {fmt(a1)} µs, "
                            f"i.e. {fmt(a1 - (c0 if c0 is not None else bare))} µs above N = 0: the cost of "
                            "the per-request machinery (context, run coroutine, send wrapper, Response) that "
                            "only exists once a plugin is in the chain")
    if c0 is not None:
        over = c0 - bare
        verdict(over <= FIXED_MAX_US,
                f"fixed cost with no plugins: N = 0 is {fmt(c0)} µs/request including the app, "
                f"{fmt(over)} µs above the bare app's {fmt(bare)} µs (target ≤ {FIXED_MAX_US} µs)")
    ca, fa, fl = stats.get("covet-async"), stats.get("falcon-async"), stats.get("floor-async")
    if ca and fa:
        verdict(ca[0] < fa[0], f"async hooks {fmt(ca[0])} µs/layer vs Falcon {fmt(fa[0])} µs/layer "
                               f"({fa[0] / ca[0]:.2f}× ahead; target: ahead)")
    if ca and fl:
        verdict(ca[0] <= ASYNC_VS_FLOOR_MAX * fl[0],
                f"async hooks {ca[0] / fl[0]:.2f}× the bare Cython loop awaiting the same coroutines "
                f"({fmt(fl[0])} µs/layer; target ≤ {ASYNC_VS_FLOOR_MAX}×)")
    if cs and stats.get("floor-sync"):
        fs = stats["floor-sync"][0]
        verdicts.append(f"- note: sync hooks cost {cs[0] / fs:.2f}× the bare Cython loop calling the same "
                        f"hooks ({fmt(fs)} µs/layer, i.e. {fmt(fs / 2 * 1000, 1)} ns a hook call)")
    cn, sb = stats.get("covet-callnext"), stats.get("starlette-base")
    if cn:
        verdict(cn[0] <= CALL_NEXT_MAX_US,
                f"per no-op call_next layer {fmt(cn[0])} µs (target ≤ {CALL_NEXT_MAX_US:g} µs, issue 15); "
                "in the same run"
                + (f" a Starlette send-wrapping layer costs {fmt(st)} µs ({cn[0] / st:.1f}× less than it)"
                   if st == st else "")
                + (f", a BaseHTTPMiddleware layer {fmt(sb[0])} µs ({sb[0] / cn[0]:.0f}× more)" if sb else ""))
    if "pluggy" in stats:
        verdicts.append(f"- note: pluggy costs {fmt(stats['pluggy'][0] / 2 * 1000, 1)} ns per impl per hook call")

    runs = meta.get("covet_runs", "")
    worst = sorted(spread.items(), key=lambda kv: -kv[1])[:1]
    noise = f"largest relative stdev: {worst[0][0]} ±{worst[0][1] * 100:.1f}%" if worst else ""
    cmd = ("`python benchmarks/bench_layers.py --fast -o benchmarks/results/layers.json` then "
           "`python benchmarks/report.py benchmarks/results/layers.json` (both from `make bench`)")
    body = f"""## Per-layer cost (pyperf, `benchmarks/bench_layers.py`)

{_docs.machine()}; {_docs.versions("pyperf", "starlette", "falcon", "pluggy", "uvloop", "Cython")};
{runs}{"" if not noise else "; " + noise}; not pinned, no `pyperf system tune`.
Command: {cmd}.

One ASGI HTTP request (fixed scope with 10 headers, no-op `receive`/`send`; the inner app sends
`http.response.start` + `http.response.body`) through N no-op layers, stepped with `coro.send(None)`
(no event loop) except BaseHTTPMiddleware, which runs on a uvloop loop. Each hook-style plugin layer has
a request and a response hook; a call_next layer is `return await call_next(request)`. Medians in µs
per request; the per-layer cost is the least-squares slope of the medians over N; the bare app alone:
**{fmt(bare)} µs**.

{table}

Targets (DESIGN.md §3):

{chr(10).join(verdicts)}
"""
    return body, verdicts


def micro_report(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    rows = ["| case | median | min | ops/s | rounds |", "|---|---:|---:|---:|---:|"]
    for b in data.get("benchmarks", []):
        s = b["stats"]
        rows.append(f"| `{b['name']}` | {s['median'] * 1e9:,.0f} ns | {s['min'] * 1e9:,.0f} ns | "
                    f"{s['ops']:,.0f} | {s['rounds']} |")
    ver = data.get("version", "")
    return f"""## Core micro cases (pytest-benchmark {ver}, `benchmarks/test_micro.py`)

{_docs.machine()}.
Command: `python -m pytest -q benchmarks/test_micro.py --benchmark-only --benchmark-json benchmarks/results/micro.json`
(from `make bench`; `make bench-micro` runs them without writing this section).

{chr(10).join(rows)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("layers_json", nargs="?", help="pyperf JSON from bench_layers.py")
    ap.add_argument("--micro", help="pytest-benchmark JSON from benchmarks/test_micro.py")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = ap.parse_args()
    if not args.layers_json and not args.micro:
        ap.error("give the layers JSON and/or --micro JSON")
    if args.layers_json:
        body, _ = layers_report(args.layers_json)
        print(body)
        if not args.no_doc:
            print("wrote", _docs.update_section("layers", body))
    if args.micro:
        body = micro_report(args.micro)
        print(body)
        if not args.no_doc:
            print("wrote", _docs.update_section("micro", body))


if __name__ == "__main__":
    main()
