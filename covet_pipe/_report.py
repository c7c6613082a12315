"""Reports on the plugins: the startup log lines, the plugin list and the per-plugin health.

``covet-pipe serve`` (and ``covet_pipe.serve``) log the startup report once the plugins have started,
so an operator sees what serves and what does not (``PluginManager.log_plugins()``);
``list_plugins()`` and ``get_health_status()`` are made of :func:`plugin_list` and :func:`plugin_health`.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from covet_pipe._standin import is_stand_in
from covet_pipe.loading import sandbox_health
from covet_pipe.logsafe import printable
from covet_pipe.plugin import is_sandboxed
from covet_pipe.registry import PluginRecord

__all__ = ["summary_lines", "plugin_list", "plugin_health"]


def _kind_text(record: PluginRecord) -> str:
    kinds = ", ".join(record.kinds) or "plugin"
    if record.source == "native":
        lang = getattr(record.plugin, "language", "c")
        return f"{kinds} (native, {'Cython' if lang == 'cython' else 'C'})"
    return f"{kinds} (python)" if record.source != "load-failed" else "unknown (not loaded)"


def summary_lines(records: Iterable[PluginRecord], failures: dict[str, str]) -> list[tuple[int, str]]:
    """One log line per plugin (name, version, kind, priority, sandboxed, path), one per failure.

    :param failures: load failures that have no record (a missing folder, an entry point ...).
    :returns: ``(logging level, line)`` pairs; text from plugins is made printable.
    """
    out: list[tuple[int, str]] = []
    for r in records:
        sandboxed = "yes" if is_sandboxed(r.plugin) else "no"
        out.append((logging.INFO, printable(
            f"plugin {r.name} {r.version}: {r.state}, kind {_kind_text(r)}, priority {r.priority}, "
            f"sandboxed {sandboxed}, path {r.path or r.source}")))
    for r in records:
        if r.state != "failed":
            continue
        if "middleware" not in r.kinds:
            guard = "it is not available"
        elif r.failure_policy == "open":
            guard = "the others serve without it (failure_policy open)"
        else:
            guard = "503 in its place on " + ("every protocol" if "*" in r.protocols else ", ".join(sorted(r.protocols)))
        out.append((logging.ERROR, printable(f"plugin {r.name} failed, {guard}: {r.error}")))
    for where, why in failures.items():
        out.append((logging.ERROR, printable(f"plugin {where} failed to load: {why}")))
    return out


def plugin_list(records: Iterable[PluginRecord]) -> list[dict[str, Any]]:
    """Every plugin with its version, kinds, style, state, counters and metadata."""
    out = []
    for record in records:
        info = record.describe()
        info["stats"] = record.stats.as_dict()
        try:
            info["metadata"] = record.plugin.metadata()
        except Exception as exc:
            info["metadata"] = {"error": f"metadata() raised {type(exc).__name__}"}
        out.append(info)
    return out


def plugin_health(records: Iterable[PluginRecord],
                  reload_errors: dict[str, str]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The overall status (``ok``, ``degraded``, ``failed``) and, per plugin, state, error and counters.

    :param reload_errors: plugin name -> why its last hot reload failed.
    """
    plugins: dict[str, dict[str, Any]] = {}
    for record in records:
        info = plugins[record.name] = {
            "state": record.state, "version": str(record.version), "error": record.error,
            "path": record.path, **record.stats.as_dict(),
        }
        if record.name in reload_errors:
            info["reload_error"] = reload_errors[record.name]
        sandbox = sandbox_health(record)
        if sandbox is not None:
            info["sandbox"] = sandbox
        if is_stand_in(record):
            info["load_failed"] = True
            info["failure_policy"] = record.failure_policy
        own = own_health(record)
        if own is not None:
            info["health"] = own
    states = {p["state"] for p in plugins.values()}
    status = "failed" if states == {"failed"} else "degraded" if "failed" in states else "ok"
    if status == "ok" and any(p.get("health", {}).get("status") == "degraded" for p in plugins.values()):
        status = "degraded"
    return status, plugins


def own_health(record: PluginRecord) -> dict[str, Any] | None:
    """What the plugin's ``health()`` says of itself, checked: None, or status and reason (printable)."""
    if record.state != "active":
        return None
    try:
        said = record.plugin.health()
    except Exception as exc:
        return {"status": "degraded", "reason": f"health() raised {type(exc).__name__}"}
    if said is None:
        return None
    if not isinstance(said, dict) or said.get("status") not in ("ok", "degraded"):
        return {"status": "degraded", "reason": "health() returned something other than None or "
                                                "{'status': 'ok' | 'degraded', 'reason': ...}"}
    return {"status": said["status"], "reason": printable(str(said.get("reason") or ""))[:512]}
