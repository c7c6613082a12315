"""Per layer, e2e beside the micro suite: what benchmarks/e2e_wrk.py puts next to its wrk figures.

The e2e added server CPU of one layer ((10 layers - bare) / 10, from the wrk rounds) is compared with
the stepped figure of the per-layer suite's own cases (benchmarks/bench_layers.py) timed in the same
run, with the pyperf slope of ``make bench``, and with callgrind's instructions per request on the
served and the stepped path (benchmarks/served_instructions.py).
"""

from __future__ import annotations

import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _docs  # noqa: E402
import apps  # noqa: E402
import bench_layers  # noqa: E402
import report  # noqa: E402
import served_instructions  # noqa: E402

#: the per-layer rows: (label, served app, stepped contender in bench_layers, its row in the layers report)
LAYER_ROWS = (("covet-pipe, sync hooks", "covet10", "covet-sync"),
              ("Starlette pure-ASGI layer wrapping send", "starlette10", "starlette-asgi"))
LAYERS_JSON = os.path.join(HERE, "results", "layers.json")


#: the stepped cases timed in the run: (bench_layers contender, layers)
STEPPED = (("bare-app", 0), ("covet-sync", apps.E2E_LAYERS), ("starlette-asgi", apps.E2E_LAYERS))
STEP_LOOPS, STEP_REPEATS = 10000, 15


def stepped_us() -> dict[str, float]:
    """µs per request of bench_layers' own cases, stepped (no loop, no server): the best of
    STEP_REPEATS batches of STEP_LOOPS requests each, the cases taking turns batch by batch."""
    cases = {c: bench_layers.Case(c, k) for c, k in STEPPED}
    best = {c: float("inf") for c in cases}
    for _ in range(STEP_REPEATS):
        for c, case in cases.items():
            best[c] = min(best[c], case(STEP_LOOPS) / STEP_LOOPS * 1e6)
    return best


def pyperf_slopes() -> tuple[dict[str, float], str]:
    """The per-layer slopes of ``make bench`` (µs) by contender, and where they come from: its JSON
    (benchmarks/results/layers.json) when there is one, else the layers section of docs/benchmarks.md."""
    wanted = [c for _, _, c in LAYER_ROWS]
    if os.path.exists(LAYERS_JSON):
        med, _spread, _bare, _meta = report.load(LAYERS_JSON)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(LAYERS_JSON)))
        return ({c: report.fit(sorted(med[c].items()))[0] for c in wanted if c in med},
                f"benchmarks/results/layers.json of {stamp} UTC")
    try:
        with open(_docs.DOC, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}, "none"
    section = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    if section is None:
        return {}, "none"
    date = re.search(r"^(\d{4}-\d\d-\d\d \d\d:\d\d UTC)", section.group(1), re.M)
    out = {}
    for c in wanted:
        m = re.search(r"^\| " + re.escape(report.LABELS[c]) + r" \|.*?\| \*\*([\d.]+)\*\* \|", section.group(1), re.M)
        if m:
            out[c] = float(m.group(1))
    return out, f"the layers section of docs/benchmarks.md ({date.group(1) if date else 'undated'})"


def per_layer(added: dict[str, tuple[float, float]], stepped: dict[str, float], app: str,
              contender: str) -> tuple[float, float, float]:
    """(e2e µs/layer, its half IQR, stepped µs/layer) for one row."""
    n = apps.E2E_LAYERS
    med, spread = added[app]
    return med / n, spread / n, (stepped[contender] - stepped["bare-app"]) / n


def layer_table(added: dict[str, tuple[float, float]], stepped: dict[str, float], slopes: dict[str, float],
                counts: dict[str, dict[str, float]]) -> list[str]:
    n = apps.E2E_LAYERS
    lines = ["| layer | e2e server CPU µs/layer (± half IQR) | stepped µs/layer, this run | e2e ÷ stepped | "
             "pyperf slope µs/layer | served instructions/layer | stepped instructions/layer | served ÷ stepped |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, app, contender in LAYER_ROWS:
        e2e, sp, st = per_layer(added, stepped, app, contender)
        slope = f"{slopes[contender]:.3f}" if contender in slopes else "–"
        if counts:
            served = (counts[app]["served"] - counts["bare"]["served"]) / n
            step = (counts[app]["stepped"] - counts["bare"]["stepped"]) / n
            ins = f"{served:,.0f} | {step:,.0f} | {served / step:.3f}"
        else:
            ins = "– | – | –"
        lines.append(f"| {label} | {e2e:.3f} ± {sp:.3f} | {st:.3f} | {e2e / st:.2f}× | {slope} | {ins} |")
    return lines


def timing_note(added: dict[str, tuple[float, float]], stepped: dict[str, float]) -> str:
    """What the e2e ÷ stepped figures say, given how far the paired rounds scatter."""
    rows = [(label, *per_layer(added, stepped, app, c)) for label, app, c in LAYER_ROWS]
    parts = []
    for label, e2e, sp, st in rows:
        if abs(e2e - st) <= sp:
            parts.append(f"{label}: {e2e:.3f} µs a layer e2e, within the rounds' scatter (± {sp:.3f}) of the "
                         f"stepped {st:.3f}")
        else:
            parts.append(f"{label}: {e2e:.3f} ± {sp:.3f} µs a layer e2e, {e2e / st:.2f}× the stepped {st:.3f}")
    out = "Timing, in this run: " + "; ".join(parts) + "."
    if any(abs(e2e - st) > sp and e2e > st for _l, e2e, sp, st in rows):
        out += (" Where the e2e figure is above the stepped one while the instructions agree, it is those "
                "instructions running slower: between two requests uvicorn, uvloop, the kernel's TCP path and "
                "wrk pass through the caches, so the layers' code and objects are no longer in them, and a "
                "disturbed machine (other processes, or a host slowing this VM) makes it worse for every "
                "layer alike (this VM exposes no hardware counters to count the misses).")
    return out


def instructions_note(counts: dict[str, dict[str, float]], connections: int,
                      added: dict[str, tuple[float, float]], stepped: dict[str, float]) -> str:
    """What the callgrind counts say (whether a layer runs the same instructions served as stepped),
    then the timing_note."""
    timing = timing_note(added, stepped)
    if not counts:
        return f"Instructions: not counted (valgrind not installed, or `--no-instructions`). {timing}"
    n = apps.E2E_LAYERS
    off = max(abs((counts[app]["served"] - counts["bare"]["served"])
                  / (counts[app]["stepped"] - counts["bare"]["stepped"]) - 1) for _, app, _c in LAYER_ROWS)
    (s1, s2), (t1, t2) = served_instructions.REQUESTS, served_instructions.STEPS
    head = (f"Instructions per request are counted by callgrind (user space; `python benchmarks/e2e_wrk.py "
            f"--instructions-only`: uvicorn serving {s1:,} and {s2:,} requests over {connections} keep-alive "
            f"connections, the stepped loop {t1:,} and {t2:,}, differences ÷ {n} layers): the bare app is "
            f"{counts['bare']['served']:,.0f} a request served (uvicorn, httptools, uvloop and the app) and "
            f"{counts['bare']['stepped']:,.0f} stepped (the app alone).")
    if off > 0.05:
        return (f"{head} A layer's served and stepped instructions differ by up to {off * 100:.1f}%: the served "
                f"path runs code that the stepped one does not; profile it (benchmarks/served_instructions.py). "
                f"{timing}")
    return (f"{head} A layer runs the same instructions served as stepped (within {off * 100:.1f}%): the "
            f"served path takes no other code path and does no more work, and the per-layer slope of the micro "
            f"suite is what a layer adds to a served request, instruction for instruction. {timing}")
