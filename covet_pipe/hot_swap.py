"""Reloading one plugin: load the new version beside the old, start it, hand state over, swap, drain.

``PluginManager.reload_plugin`` calls :func:`reload_plugin`; the watcher (``reload.py``) calls that.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from pathlib import Path
from typing import Any

from covet_pipe.errors import PluginError
from covet_pipe.manager import _end_helpers
from covet_pipe.registry import PluginRecord

__all__ = ["reload_plugin"]

log = logging.getLogger("covet_pipe.manager")


async def reload_plugin(manager: Any, name: str, path: str | None) -> None:
    """Load a plugin's file again beside the running version, start it, swap, drain the old.

    If the new version fails, the old one keeps serving and the error is raised.
    A ``path`` loads the new version from another file (a renamed plugin file).
    """
    if not manager.config.hot_reload:
        raise PluginError(f"cannot reload {name!r}: hot_reload is off; set PluginConfig(hot_reload=True)",
                          plugin_name=name)
    old = manager._need(name)
    if old.path is None:
        raise PluginError(f"cannot reload {name!r}: it was registered as an instance, so there is no "
                          "file to load it from; unload it and register the new instance",
                          plugin_name=name)
    from covet_pipe._standin import is_stand_in, replace_stand_in
    if is_stand_in(old):    # the file never loaded: what it defines now takes the stand-in's place
        await replace_stand_in(manager, old, path)
        manager._reload_errors.pop(name, None)
        return
    from covet_pipe.discovery import SandboxRequested, load_path, sandbox_spec
    try:
        source = path or old.path
        if getattr(old.plugin, "_sup", None) is not None:
            # It runs sandboxed: so does its new version (a new helper generation), never imported here.
            raise SandboxRequested(sandbox_spec(Path(source), manager.config))
        loaded = await asyncio.to_thread(load_path, source, manager.config)
    except SandboxRequested as req:
        loaded = [await manager._start_sandboxed(req.spec)]
    fresh = [r for r in loaded if r.name == name]
    for record in loaded:
        if record.name != name:
            await _end_helpers(record)
    if not fresh:
        raise PluginError(f"cannot reload {name!r}: {source} no longer defines a plugin of that name",
                          plugin_name=name, path=source)
    new = fresh[0]
    new.stats = old.stats
    policy = manager.config.policy_for(new.name, new.path)
    if policy is not None:
        new.failure_policy = policy
    broken = _broken_dependents(manager, name, new.version)
    if broken:
        await _end_helpers(new)
        raise PluginError(
            f"reload of {name!r} refused, the old version {old.version} keeps serving: the new version "
            f"{new.version} does not satisfy {'; '.join(broken)}; release a version that does, or "
            "update those plugins' dependencies first", plugin_name=name, path=old.path)
    async with manager._get_lock():
        manager._registry._records[name] = new
        problem = manager._registry.dependency_problem(new)
        started = problem is None and await manager._registry.start(new)
        if not started:
            manager._registry._records[name] = old
            await _end_helpers(new)
            raise PluginError(f"reload of {name!r} failed, the old version keeps serving: "
                              f"{problem or new.error}", plugin_name=name, path=old.path)
        handoff = await _hand_state(old, new)
        if handoff is not None:
            manager._registry._records[name] = old
            await manager._registry.stop(new)
            await _end_helpers(new)
            raise PluginError(f"reload of {name!r} failed, the old version keeps serving: {handoff}",
                              plugin_name=name, path=old.path)
        new.state = "active"
        old.state = "draining"
        snap = manager._rebuild()
        await manager._drain(snap, [old.plugin])
        await manager._registry.stop(old)
    manager._reload_errors.pop(name, None)
    log.info("reloaded plugin %r: %s -> %s", name, old.version, new.version)


def _broken_dependents(manager: Any, name: str, version: Any) -> list[str]:
    """The running plugins whose constraint on *name* a *version* would break (as messages)."""
    out = []
    for record in manager._registry.records():
        if record.state not in ("active", "initialized"):
            continue
        for req in record.requires:
            if req.name == name and req.specifier and not req.specifier.contains(version, prereleases=True):
                out.append(f"{record.name}'s {record.specs.get(req.name, str(req))!r}")
    return out


async def _hand_state(old: PluginRecord, new: PluginRecord) -> str | None:
    """Move the old version's exported state into the new one; a message if the new one refused it.

    An old version that cannot export (it raised, its helper is gone, the state is not
    JSON-safe) does not block the reload that may be fixing it: the new version starts
    without state and the log says why.
    """
    try:
        state = old.plugin.export_state()
        if inspect.isawaitable(state):
            state = await state
        if state is None:
            return None
        state = json.loads(json.dumps(state))
    except Exception as exc:
        log.warning("reload of %r: export_state() of version %s failed (%s: %s); version %s starts "
                    "without the old state (export dicts, lists, strings, numbers, booleans and None)",
                    old.name, old.version, type(exc).__name__, exc, new.version)
        return None
    try:
        done = new.plugin.import_state(state)
        if inspect.isawaitable(done):
            await done
    except Exception as exc:
        return f"import_state() of version {new.version} raised {type(exc).__name__}: {exc}"
    return None
