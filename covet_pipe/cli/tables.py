"""The admin API's documents as text for people: plain aligned columns, no colour.

A server with ``--workers N`` answers a GET whose workers disagree (their counters, say) with
``{"workers": [{"worker": SLOT, "pid": PID, "status": CODE, "document": ...}, ...]}``; each table
then has a ``WORKER`` column (``SLOT/PID``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["format_table", "health_table", "per_worker", "plugins_table", "reload_lines"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """*rows* under *header*, each column as wide as its widest cell; ``-`` for None."""
    cells = [[str(c) for c in header]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def per_worker(document: Any) -> list[tuple[str | None, Any]]:
    """(worker label or None, document) pairs: one per worker of an envelope, else the document alone."""
    workers = document.get("workers") if isinstance(document, dict) else None
    if isinstance(workers, list) and all(isinstance(w, dict) and "document" in w for w in workers):
        return [(f"{w.get('worker')}/{w.get('pid')}", w["document"]) for w in workers]
    return [(None, document)]


def _us(value: Any) -> str | None:
    return f"{value:.2f}" if isinstance(value, (int, float)) else None


def plugins_table(document: Any) -> str:
    """``GET /_plugins``: one row per plugin (and worker)."""
    parts = per_worker(document)
    several = parts[0][0] is not None
    header = (["WORKER"] if several else []) + ["NAME", "VERSION", "KIND", "STYLE", "STATE", "CALLS",
                                                "ERRORS", "AVG_US"]
    rows: list[list[Any]] = []
    for label, plugins in parts:
        lead = [label] if several else []
        if not isinstance(plugins, list):
            rows.append(lead + ["(no answer)", None, None, None, _error(plugins), None, None, None])
            continue
        for p in plugins:
            stats = p.get("stats") or {}
            rows.append(lead + [p.get("name"), p.get("version"), ",".join(p.get("kinds") or ()) or None,
                                p.get("style"), p.get("state"), stats.get("calls"), stats.get("errors"),
                                _us(stats.get("avg_hook_us"))])
    if not rows:
        return "no plugins loaded"
    return format_table(header, rows)


def _error(document: Any) -> str:
    if isinstance(document, dict) and "error" in document:
        return str(document["error"])
    return "unexpected answer"


def health_table(document: Any) -> str:
    """``GET /_plugins/health``: the overall status, then one row per plugin (and worker)."""
    parts = per_worker(document)
    several = parts[0][0] is not None
    lines: list[str] = []
    rows: list[list[Any]] = []
    for label, health in parts:
        where = f"worker {label}: " if several else ""
        if not isinstance(health, dict) or "status" not in health:
            lines.append(f"{where}no health answer ({_error(health)})")
            continue
        lines.append(f"{where}status {health['status']} (manager {health.get('manager')}, chain generation "
                     f"{health.get('chain_generation')}, {health.get('inflight')} in flight)")
        fleet = health.get("fleet")
        if isinstance(fleet, dict):
            lines.append(f"{where}fleet {fleet.get('name')} {'connected' if fleet.get('connected') else 'NOT connected'}"
                         f", generation {fleet.get('generation')} of {fleet.get('stored_generation')}"
                         + "".join(f"; {p}: {m.get('error')}" for p, m in (fleet.get("mismatches") or {}).items()))
        for name, info in (health.get("plugins") or {}).items():
            error = info.get("reload_error") or info.get("error")
            rows.append(([label] if several else []) + [name, info.get("state"), info.get("version"),
                                                        info.get("calls"), info.get("errors"), error])
    if rows:
        header = (["WORKER"] if several else []) + ["NAME", "STATE", "VERSION", "CALLS", "ERRORS", "ERROR"]
        lines += ["", format_table(header, rows)]
    return "\n".join(lines)


def reload_lines(name: str, document: Any) -> list[str]:
    """``POST /_plugins/NAME/reload``: what happened, one line (per worker)."""
    out = []
    for label, answer in per_worker(document):
        where = f"worker {label}: " if label is not None else ""
        if isinstance(answer, dict) and "reloaded" in answer:
            out.append(f"{where}reloaded {answer['reloaded']} (version {answer.get('version')})")
        elif isinstance(answer, dict) and "error" in answer:
            serving = answer.get("serving")
            out.append(f"{where}{answer['error']}" + (f"; {serving}" if serving else ""))
        else:
            out.append(f"{where}reloading {name!r}: unexpected answer {answer!r}")
    return out
