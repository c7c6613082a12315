"""What the metrics read at scrape (or flush) time: the core's counters, as plain numbers.

Nothing here runs per request. ``read(manager)`` walks the current chain's entries (their
``PluginStats`` live in C), the sandboxed plugins' supervisors, the manager's reload counts when it
keeps them, the storage engines' call counts, the fleet's generations, and the HTTP/1.1 server's counters of
this process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from covet_pipe.plugin import is_sandboxed
from covet_pipe.server.http11 import server_counters

__all__ = ["Histogram", "Readings", "read", "read_server"]

#: (upper bounds in seconds, the last inf; per-bucket counts, not cumulative; sum in seconds)
Histogram = tuple[tuple[float, ...], tuple[int, ...], float]
Value = Union[float, Histogram]
#: family name -> [(label values, value)]
Readings = dict[str, list[tuple[tuple[str, ...], Value]]]

#: the sandbox supervisor's counter for each sandbox family
_SANDBOX = {"covet_pipe_sandbox_helper_restarts": "restarts", "covet_pipe_sandbox_helper_ends": "ends",
            "covet_pipe_sandbox_helper_kills": "kills", "covet_pipe_sandbox_quarantines": "quarantines"}


def read(manager: Any, *, server: bool = True) -> Readings:
    """Every family's samples now, for *manager*'s plugins (and this process's server if *server*)."""
    out: Readings = {}
    snap = manager.chain.current
    for entry in snap.entries:
        _plugin(out, entry)
    out["covet_pipe_inflight_requests"] = [((), float(snap.inflight))]
    _reloads(out, manager)
    _storage(out, manager)
    _fleet(out, manager)
    if server:
        _server(out)
    return out


def read_server() -> Readings:
    """This process's HTTP/1.1 server families alone."""
    out: Readings = {}
    _server(out)
    return out


def _add(out: Readings, family: str, labels: tuple[str, ...], value: Value) -> None:
    out.setdefault(family, []).append((labels, value))


def _plugin(out: Readings, entry: Any) -> None:
    for protocol, stats in sorted(entry.protocol_stats.items()):
        _plugin_protocol(out, (entry.name, protocol), stats)
    if is_sandboxed(entry.plugin):
        _sandbox(out, entry)
    if hasattr(entry.plugin, "ratelimit_counts"):
        _ratelimit(out, entry)


def _plugin_protocol(out: Readings, key: tuple[str, str], stats: Any) -> None:
    _add(out, "covet_pipe_plugin_calls", key, stats.calls)
    _add(out, "covet_pipe_plugin_errors", key, stats.errors)
    _add(out, "covet_pipe_plugin_skipped_open", key, stats.skipped_open)
    by_class = stats.short_circuits_by_class()
    for status_class, n in sorted(by_class.items()):
        _add(out, "covet_pipe_plugin_short_circuits", key + (status_class,), n)
    bounds, counts = stats.hook_histogram()
    _add(out, "covet_pipe_plugin_hook_seconds", key, (bounds, counts, stats.sampled_ns / 1e9))
    _add(out, "covet_pipe_plugin_inflight", key, float(stats.inflight))


def _ratelimit(out: Readings, entry: Any) -> None:
    allowed, limited, failures = entry.plugin.ratelimit_counts()
    _add(out, "covet_pipe_ratelimit_decisions", (entry.name, "allowed"), allowed)
    _add(out, "covet_pipe_ratelimit_decisions", (entry.name, "limited"), limited)
    _add(out, "covet_pipe_ratelimit_backend_failures", (entry.name,), failures)


def _sandbox(out: Readings, entry: Any) -> None:
    try:
        health = entry.plugin.metadata()
    except Exception:           # a supervisor that cannot report is left out of this scrape
        return
    for family, field in _SANDBOX.items():
        _add(out, family, (entry.name,), int(health.get(field) or 0))
    _add(out, "covet_pipe_sandbox_quarantined", (entry.name,), 1.0 if health.get("quarantined") else 0.0)


def _pair(counts: Any) -> tuple[int, int]:
    """(ok, failed) from what ``reload_counts()`` gives for one plugin: a mapping or a pair."""
    if isinstance(counts, Mapping):
        ok = counts.get("ok", counts.get("succeeded", 0))
        failed = counts.get("failed", counts.get("failures", 0))
        return int(ok or 0), int(failed or 0)
    ok, failed = counts
    return int(ok), int(failed)


def _reloads(out: Readings, manager: Any) -> None:
    counts = getattr(manager, "reload_counts", None)
    if counts is None:
        return                  # a manager that does not count reloads: the families stay out
    for name, pair in sorted(counts().items()):
        ok, failed = _pair(pair)
        _add(out, "covet_pipe_plugin_reloads", (name,), ok)
        _add(out, "covet_pipe_plugin_reload_failures", (name,), failed)


def _storage(out: Readings, manager: Any) -> None:
    counts = getattr(manager, "storage_counts", None)
    if counts is None:
        return                  # a manager that does not count storage calls: the families stay out
    for name, per_op in counts().items():
        for op, (calls, errors) in per_op.items():
            _add(out, "covet_pipe_storage_calls", (name, op), calls)
            _add(out, "covet_pipe_storage_errors", (name, op), errors)


def _fleet(out: Readings, manager: Any) -> None:
    readings = getattr(manager, "fleet_health", None)
    fleet = readings() if readings is not None else None
    if fleet is None:
        return                  # no fleet: the families stay out
    _add(out, "covet_pipe_fleet_generation", (fleet["name"],), float(fleet["generation"]))
    _add(out, "covet_pipe_fleet_stored_generation", (fleet["name"],), float(fleet["stored_generation"]))
    _add(out, "covet_pipe_fleet_connected", (fleet["name"],), 1.0 if fleet["connected"] else 0.0)


def _server(out: Readings) -> None:
    counters = server_counters()
    for status_class, n in counters["responses"].items():
        if n or status_class != "other":
            _add(out, "covet_pipe_http_responses", (status_class,), n)
    _add(out, "covet_pipe_http_request_duration_seconds", (),
         (counters["duration_bounds"], counters["duration_counts"], counters["duration_sum_s"]))
    _add(out, "covet_pipe_http_open_connections", (), float(counters["open_connections"]))
