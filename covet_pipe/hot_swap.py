"""Swapping a plugin's versions: load the new beside the old, start it, hand state over, swap, drain.

:func:`reload_plugin` is what ``PluginManager.reload_plugin`` (and so the file watcher) runs; a
plugin file held by a stand-in (it failed to load) is loaded in the stand-in's place by
:func:`replace_stand_in`. Both take the registry and the snapshots, change records only through the
registry's methods, and leave starting what took a stand-in's place to the caller.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

from covet_pipe._standin import is_stand_in
from covet_pipe.errors import PluginError
from covet_pipe.loading import discard, end_helpers, load
from covet_pipe.logsafe import printable
from covet_pipe.plugin import is_sandboxed
from covet_pipe.registry import PluginRecord, Registry
from covet_pipe.snapshots import Snapshots

__all__ = ["reload_plugin", "replace_stand_in"]

log = logging.getLogger("covet_pipe.manager")


async def reload_plugin(registry: Registry, snapshots: Snapshots, name: str, path: str | None) -> list[str]:
    """Load a plugin's file again beside the running version, start it, swap, drain the old.

    If the new version fails, the old one keeps serving and the error is raised.
    A ``path`` loads the new version from another file (a renamed plugin file).
    :returns: the plugins that took the place of a stand-in and wait to be started (see
        :func:`replace_stand_in`); ``[]`` once the new version serves.
    """
    config = registry.config
    if not config.hot_reload:
        raise PluginError(f"cannot reload {name!r}: hot_reload is off; set PluginConfig(hot_reload=True)",
                          plugin_name=name)
    old = registry.need(name)
    if old.path is None:
        raise PluginError(f"cannot reload {name!r}: it was registered as an instance, so there is no "
                          "file to load it from; unload it and register the new instance",
                          plugin_name=name)
    if is_stand_in(old):    # the file never loaded: what it defines now takes the stand-in's place
        return await replace_stand_in(registry, snapshots, old, path)
    source = path or old.path
    # A sandboxed plugin's new version runs sandboxed too (a new helper generation), never imported here.
    loaded = await load(source, config, sandbox=is_sandboxed(old.plugin))
    fresh = [r for r in loaded if r.name == name]
    for record in loaded:
        if record.name != name:
            await end_helpers(record)       # left unused (its module is the new version's too)
    if not fresh:
        for record in loaded:
            await discard(record, registry)
        raise PluginError(f"cannot reload {name!r}: {source} no longer defines a plugin of that name",
                          plugin_name=name, path=source)
    new = fresh[0]
    new.protocol_stats = old.protocol_stats
    broken = _broken_dependents(registry, name, new.version)
    if broken:
        await discard(new, registry)
        raise PluginError(
            f"reload of {name!r} refused, the old version {old.version} keeps serving: the new version "
            f"{new.version} does not satisfy {'; '.join(broken)}; release a version that does, or "
            "update those plugins' dependencies first", plugin_name=name, path=old.path)
    async with snapshots.lock():
        registry.replace(new)
        problem = registry.dependency_problem(new)
        started = problem is None and await registry.start(new)
        if not started:
            registry.replace(old)
            await discard(new, registry)
            raise PluginError(f"reload of {name!r} failed, the old version keeps serving: "
                              f"{problem or new.error}", plugin_name=name, path=old.path)
        handoff = await _hand_state(old, new)
        if handoff is not None:
            registry.replace(old)
            await registry.stop(new)
            await discard(new, registry)
            raise PluginError(f"reload of {name!r} failed, the old version keeps serving: {handoff}",
                              plugin_name=name, path=old.path)
        new.state = "active"
        old.state = "draining"
        snap = snapshots.rebuild()
        await snapshots.drain(snap, [old.plugin])
        await registry.stop(old)
        await discard(old, registry)
    log.info("reloaded plugin %r: %s -> %s", name, old.version, new.version)
    return []


async def replace_stand_in(registry: Registry, snapshots: Snapshots, old: PluginRecord,
                           path: str | None) -> list[str]:
    """Load the file a stand-in holds the place of; its plugins take the stand-in's place.

    Until they are active the stand-in's 503 entry stays in the chain (there is no moment without
    it): the caller starts them (``initialize_all``) and a plugin of the file that then fails to
    start is fail-closed as usual.
    :returns: the names of the plugins that took the stand-in's place.
    :raises PluginError: when the file still does not load (the stand-in stays, with the new reason).
    """
    source = path or old.path
    assert source is not None
    try:
        records = await load(source, registry.config)
    except PluginError as exc:
        old.plugin.load_failure = str(exc)
        old.error = f"could not be loaded: {exc}"
        raise PluginError(f"{source} still does not load, so its stand-in {old.name!r} keeps answering in its "
                          f"place: {exc}", plugin_name=old.name, path=source) from None
    # No await from here to the end of the swap of records: nothing sees the registry half-changed.
    registry.remove(old.name)
    added: list[PluginRecord] = []
    try:
        for record in records:
            registry.add(record)
            added.append(record)
    except PluginError:
        for record in added:
            registry.remove(record.name)
        registry.replace(old)
        for record in records:
            await discard(record, registry)
        raise
    snapshots.chain.ready = False        # the chain is rebuilt without the stand-in
    log.info("plugin file %s loads now: %s took the place of its stand-in %s", printable(source),
             printable(", ".join(f"{r.name} {r.version}" for r in records)), printable(repr(old.name)))
    return [r.name for r in records]


def _broken_dependents(registry: Registry, name: str, version: Any) -> list[str]:
    """The running plugins whose constraint on *name* a *version* would break (as messages)."""
    out = []
    for record in registry.records():
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
                    old.name, old.version, type(exc).__name__, printable(str(exc)), new.version)
        return None
    try:
        done = new.plugin.import_state(state)
        if inspect.isawaitable(done):
            await done
    except Exception as exc:
        return f"import_state() of version {new.version} raised {type(exc).__name__}: {exc}"
    return None
