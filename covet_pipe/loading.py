"""Plugin files into records on the serving loop: in-process through discovery, or in sandboxed helpers.

:func:`load` (one file) and :func:`discover_all` (``plugin_paths`` and entry points) run discovery
off the loop; a plugin that is to run sandboxed comes back from it as a spec (its code is never
imported in the host), and its helpers start here, on the loop that will call them.
:func:`end_helpers` ends the helpers of a sandboxed record that does not serve (it failed to start,
or the manager stopped); :func:`discard` releases everything of a record that is gone for good.
Whether a loaded plugin runs sandboxed is ``covet_pipe.plugin.is_sandboxed``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from covet_pipe._standin import is_stand_in, stand_in
from covet_pipe.config import PluginConfig
from covet_pipe.discovery import LoadReport, SandboxRequested, discover, discovered_by, forget_module, load_path
from covet_pipe.errors import PluginError
from covet_pipe.plugin import is_sandboxed
from covet_pipe.registry import PluginRecord, Registry
from covet_pipe.validation import validate

if TYPE_CHECKING:
    from covet_pipe.sandbox.supervisor import SandboxSpec

__all__ = ["discover_all", "report_earlier", "load", "start_sandboxed", "end_helpers", "discard", "sandbox_health"]


async def discover_all(config: PluginConfig, registry: Registry) -> LoadReport:
    """What discovery finds in ``plugin_paths`` and entry points, the sandboxed plugins' helpers started.

    A sandboxed plugin whose helpers do not start is a failure with a stand-in in its place, like a
    file that does not load; a plugin the registry holds already is left out.
    """
    report = await asyncio.to_thread(discover, config, registry)
    known = {r.path for r in registry.records()}
    for spec in report.sandboxed:
        if spec.path in known:
            continue
        try:
            report.records.append(await start_sandboxed(spec))
        except PluginError as exc:
            report.failed[spec.path] = str(exc)
            report.stand_ins.append(stand_in(spec.path, str(exc), config, spec.manifest))
    return report


def report_earlier(report: LoadReport, records: Iterable[PluginRecord], config: PluginConfig) -> None:
    """Add to *report* what an earlier discovery loaded (first in ``loaded``) or failed to (in ``failed``).

    A second ``load_plugins()`` (after the one initialize_all made at startup, say) so reports what is
    loaded from plugin_paths and entry points already, as well as what it loaded itself.
    """
    already = []
    for r in records:
        if not discovered_by(r, config):
            continue
        if not is_stand_in(r) and r.name not in report.loaded:
            already.append(r.name)
        elif is_stand_in(r) and r.path is not None and r.path not in report.failed:   # failed before, still held by a stand-in
            report.failed[r.path] = r.plugin.load_failure
    report.loaded[:0] = already


async def load(path: str | Path, config: PluginConfig, *, sandbox: bool = False) -> list[PluginRecord]:
    """The records of the plugins of one file or package, sandboxed ones with their helpers started.

    :param sandbox: run it sandboxed whatever ``sandbox_enabled`` and its manifest say (discovery's
        ``wants_sandbox`` decides, and refuses what cannot run sandboxed, a native library say).
    :raises PluginLoadError: naming the file and what to fix.
    """
    try:
        return await asyncio.to_thread(load_path, path, config, sandbox=sandbox)
    except SandboxRequested as req:
        return [await start_sandboxed(req.spec)]


async def start_sandboxed(spec: SandboxSpec) -> PluginRecord:
    """Start a sandboxed plugin's helpers and make the record of its proxy."""
    # Imported here: the sandbox's supervisor and msgspec add a fifth to covet_pipe's import time, for
    # hosts that never sandbox anything.
    from covet_pipe.sandbox.proxy import start_sandboxed as start_proxy
    proxy = await start_proxy(spec)
    if spec.manifest.get("protocols"):
        proxy.protocols = frozenset(spec.manifest["protocols"])
    try:
        return validate(proxy, priority=spec.manifest.get("priority"),
                        failure_policy=spec.manifest.get("failure_policy"), source="sandbox",
                        path=spec.path, config=spec.config)
    except PluginError:
        await proxy.shutdown()
        raise


async def end_helpers(record: PluginRecord) -> None:
    """End the helper processes of a sandboxed plugin that never started (or failed to); others: nothing."""
    sup = _supervisor(record)
    if sup is not None and not sup.closing:
        await sup.shutdown(call_plugin=False)


async def discard(record: PluginRecord, registry: Registry) -> None:
    """Release what a record that is gone for good holds (unloaded, replaced by a reload, refused):
    the helpers of a sandboxed plugin, the fresh modules of one loaded in-process, unless a record
    of *registry* came from the same module (a file that makes several plugins)."""
    await end_helpers(record)
    if record.module is not None and not any(r.module is record.module for r in registry.records()):
        forget_module(record.module)


def sandbox_health(record: PluginRecord) -> dict[str, Any] | None:
    """The helpers' health of a sandboxed plugin (pids, restarts, quarantine ...); None for the others."""
    sup = _supervisor(record)
    return None if sup is None else sup.health()


def _supervisor(record: PluginRecord) -> Any:
    return getattr(record.plugin, "_sup", None) if is_sandboxed(record.plugin) else None
