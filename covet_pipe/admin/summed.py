"""The dashboard's snapshot over several workers: one document, the counters summed.

With ``--workers N`` each worker has its own manager and counters; the supervisor asks each for its
snapshot (``GET /_plugins/dashboard/snapshot``, :func:`covet_pipe.admin.events.snapshot`) and shows
the sum, as one scrape of ``/metrics`` does. How each field is merged:

- ``calls``, ``errors``, ``short_circuits``, ``skipped_open``, ``inflight`` (a plugin's ``stats`` and
  its health row): summed; ``avg_hook_us``: the average weighted by each worker's calls;
  ``p50_hook_us`` / ``p99_hook_us``: the highest of the workers' (a quantile cannot be summed; the
  slowest worker's is an upper bound of the fleet's);
- a plugin's ``state`` and the health ``status``: the worst any worker reports;
- the reload history and recent errors: every worker's, newest first, each event with its
  ``worker``; ``reload_counts``: summed;
- the rest (the chain, versions, metadata): the first worker's, and ``workers`` lists each worker's
  slot, pid and whether it answered.
"""

from __future__ import annotations

from typing import Any

__all__ = ["COUNTERS", "sum_snapshots"]

#: the integer counters a plugin's stats (and health row) carry, summed over the workers
COUNTERS = ("calls", "errors", "short_circuits", "skipped_open", "inflight")
_HIGHEST = ("p50_hook_us", "p99_hook_us")
#: worst first
_STATES = ("failed", "stopped", "draining", "registered", "initialized", "active")
_STATUS = ("failed", "degraded", "ok")
#: events each merged ring keeps
MAX_EVENTS = 100


def _worst(values: list[Any], order: tuple[str, ...]) -> Any:
    known = [v for v in values if v in order]
    return min(known, key=order.index) if known else values[0]


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rows[0])
    for key in COUNTERS:
        if any(isinstance(r.get(key), int) for r in rows):
            out[key] = sum(r.get(key) or 0 for r in rows)
    weighted = [(r["avg_hook_us"], r.get("calls") or 0) for r in rows if r.get("avg_hook_us") is not None]
    if weighted:
        total = sum(w for _, w in weighted)
        out["avg_hook_us"] = (sum(v * w for v, w in weighted) / total if total
                              else sum(v for v, _ in weighted) / len(weighted))
    for key in _HIGHEST:
        seen = [r[key] for r in rows if r.get(key) is not None]
        if key in out:
            out[key] = max(seen) if seen else None
    return out


def _plugins(lists: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for plugins in lists:
        for p in plugins:
            by_name.setdefault(p["name"], []).append(p)
    out = []
    for name, rows in by_name.items():
        merged = dict(rows[0])
        merged["state"] = _worst([r.get("state") for r in rows], _STATES)
        merged["stats"] = _stats([r.get("stats") or {} for r in rows])
        out.append(merged)
    return out


def _health(docs: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(docs[0])
    out["status"] = _worst([d.get("status") for d in docs], _STATUS)
    out["inflight"] = sum(d.get("inflight") or 0 for d in docs)
    rows: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        for name, row in (d.get("plugins") or {}).items():
            rows.setdefault(name, []).append(row)
    plugins = {}
    for name, group in rows.items():
        merged = _stats(group)
        merged["state"] = _worst([r.get("state") for r in group], _STATES)
        plugins[name] = merged
    out["plugins"] = plugins
    return out


def _events(rings: list[tuple[int, list[dict[str, Any]] | None]]) -> list[dict[str, Any]] | None:
    if all(ring is None for _, ring in rings):
        return None
    merged = [{**event, "worker": slot} for slot, ring in rings for event in ring or ()]
    merged.sort(key=lambda e: e.get("at") or 0, reverse=True)
    return merged[:MAX_EVENTS]


def _sum_tree(values: list[Any]) -> Any:
    """Numbers summed, dicts key by key, lists element by element; anything else: the first."""
    first = values[0]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return sum(values)
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: _sum_tree([v[k] for v in values if k in v]) for k in keys}
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [_sum_tree(list(col)) for col in zip(*values)]
    return first


def sum_snapshots(answers: list[tuple[int, int | None, dict[str, Any] | None]]) -> dict[str, Any]:
    """One snapshot from the workers' *answers*: (slot, pid, its snapshot or None if it did not answer).

    :raises ValueError: no worker answered.
    """
    docs = [(slot, doc) for slot, _pid, doc in answers if isinstance(doc, dict)]
    if not docs:
        raise ValueError("no worker answered")
    snapshots = [doc for _, doc in docs]
    out = dict(snapshots[0])
    out["at"] = max(d.get("at") or 0 for d in snapshots)
    out["plugins"] = _plugins([d.get("plugins") or [] for d in snapshots])
    out["health"] = _health([d.get("health") or {} for d in snapshots])
    for key in ("reloads", "errors"):
        out[key] = _events([(slot, d.get(key)) for slot, d in docs])
    counts = [d.get("reload_counts") for d in snapshots if d.get("reload_counts") is not None]
    out["reload_counts"] = _sum_tree(counts) if counts else None
    out["workers"] = [{"worker": slot, "pid": pid, "answered": isinstance(doc, dict)}
                      for slot, pid, doc in answers]
    return out
