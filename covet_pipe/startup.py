"""Starting what is pending: every registered or stopped plugin, in dependency order, then the chain swapped.

:func:`start_pending` is the loop ``PluginManager.initialize_all`` runs under the snapshots' lock: each
round resolves missing dependencies (``auto_resolve_dependencies``), plans the order, fails what cannot
start (a cycle, a missing or unsatisfied dependency), starts the rest and rebuilds the chain; it loops
until nothing is pending, so a plugin registered while an ``initialize()`` ran is started too.
:func:`strict_failures` is what ``strict=True`` refuses to serve with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from covet_pipe.discovery import find_plugin
from covet_pipe.logsafe import printable
from covet_pipe.registry import PluginRecord, Registry
from covet_pipe.snapshots import Snapshots

__all__ = ["start_pending", "resolve_missing", "strict_failures"]

log = logging.getLogger("covet_pipe.manager")


async def start_pending(registry: Registry, snapshots: Snapshots, add: Callable[[PluginRecord], None]) -> None:
    """Start every plugin not yet started, in dependency order (the caller holds the snapshots' lock).

    A plugin that fails is marked failed (with the reason in health) and its dependents are not started.
    :param add: registers a record found for a missing dependency (the manager's own way to add one).
    """
    stale = not snapshots.chain.ready     # records were added (a stand-in starts nothing)
    while True:
        await resolve_missing(registry, add)
        pending = [r for r in registry.records() if r.state in ("registered", "stopped")]
        if not pending:
            if stale:
                snapshots.rebuild()
            return
        live = [r.name for r in registry.records() if r.state != "failed"]
        order, failures = registry.plan(live)
        for name in order:
            record = registry.get(name)
            if record is None or record.state not in ("registered", "stopped"):
                continue
            if name in failures:
                registry.fail(record, failures[name])
                continue
            problem = registry.dependency_problem(record)
            if problem is not None:
                registry.fail(record, problem)
                continue
            await registry.start(record)
        for record in registry.records():
            if record.state == "initialized":
                record.state = "active"
        snapshots.rebuild()
        stale = False


async def resolve_missing(registry: Registry, add: Callable[[PluginRecord], None]) -> None:
    """With ``auto_resolve_dependencies``: find missing dependencies in plugin_paths and entry points."""
    config = registry.config
    if not config.auto_resolve_dependencies:
        return
    for _ in range(16):  # bounded: each round may bring new dependencies
        missing = {q.name for r in registry.records() if r.state == "registered"
                   for q in r.requires if registry.get(q.name) is None}
        if not missing:
            return
        found = False
        for name in sorted(missing):
            record = await asyncio.to_thread(find_plugin, name, config)
            if record is not None:
                add(record)
                log.info("auto-resolved dependency %r from %s", name, printable(record.path or record.source))
                found = True
        if not found:
            return


def strict_failures(registry: Registry, load_failures: dict[str, str]) -> dict[str, str]:
    """What ``strict=True`` refuses to serve with: load failures and plugins that failed (empty: serve)."""
    failed = {f"{r.name} ({r.path or r.source})": r.error or "failed"
              for r in registry.records() if r.state == "failed"}
    return {**load_failures, **failed} if failed or load_failures else {}
