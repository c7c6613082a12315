"""The startup report: one log line per plugin, and one per failure with its reason.

``covet-pipe serve`` (and ``covet_pipe.serve``) log it once the plugins have started, so an
operator sees what serves and what does not: ``PluginManager.log_plugins()``.
"""

from __future__ import annotations

import logging
from typing import Iterable

from covet_pipe.logsafe import printable
from covet_pipe.registry import PluginRecord

__all__ = ["summary_lines"]


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
        sandboxed = "yes" if getattr(r.plugin, "_sup", None) is not None else "no"
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
