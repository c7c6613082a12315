"""PluginManager: covet-pipe's one handle on its plugins.

It registers, loads, starts, stops, unloads, reloads and inspects plugins, and delegates to the rooms
that do the work: the registry (records, dependency order, one plugin's start and stop), discovery and
loading (files into records, sandboxed ones with their helpers), the snapshots (the chain a pipeline
serves, rebuilt and drained), hot_swap (a plugin's new version beside the old), the file watcher and
the history (the last reloads and plugin errors).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NamedTuple

from covet_pipe import fleet, history, hot_swap, startup
from covet_pipe._core import Chain
from covet_pipe._report import plugin_health, plugin_list, summary_lines
from covet_pipe._standin import held_by
from covet_pipe.config import PluginConfig
from covet_pipe.context import Services
from covet_pipe.errors import PluginError, PluginNotFoundError, StrictError
from covet_pipe.loading import discard, discover_all, end_helpers, load, report_earlier
from covet_pipe.logsafe import printable
from covet_pipe.registry import PluginRecord, Registry
from covet_pipe.reload import PluginWatcher
from covet_pipe.snapshots import Snapshots
from covet_pipe.validation import validate

__all__ = ["PluginManager", "ChainEntry"]

log = logging.getLogger("covet_pipe.manager")


class ChainEntry(NamedTuple):
    """One middleware of the current chain, read-only (``get_middleware_chain()``)."""

    name: str
    version: str
    priority: int
    kind: str
    style: str
    state: str
    #: the protocols it runs for ("http", "websocket", "resp" ...; "*" for every one)
    protocols: tuple[str, ...] = ()


class PluginManager:
    """Registers, loads, starts, stops, reloads and inspects plugins; its ``chain`` is what a Pipeline serves.

    :param config: settings; ``PluginConfig()`` when omitted.
    """

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else PluginConfig()
        self._registry = Registry(self.config)
        self._snapshots = Snapshots(self._registry)
        #: "new" until initialize_all, "running", "stopping" during shutdown_all, then "closed" (a later
        #: initialize_all starts the plugins again)
        self.status = "new"
        #: the file watcher (reload_on_change), started by initialize_all on the running loop
        self._watcher: PluginWatcher | None = None
        #: load_plugins() has run (initialize_all runs it for plugin_paths that nobody loaded)
        self._discovered = False
        #: where -> why, for load failures no record holds (a missing folder, an entry point ...)
        self._load_failures: dict[str, str] = {}
        #: the last reloads and plugin errors (bounded rings; reload_history(), recent_errors())
        self._history = history.History(owns=lambda name: self._registry.get(name) is not None)
        history.watch_plugin_errors(self._history)
        #: reloads wait for one another (one lock per event loop, as the snapshots' lock)
        self._reload_lock: tuple[asyncio.Lock, asyncio.AbstractEventLoop] | None = None
        #: PluginConfig(fleet=...): the other workers' reloads through Redis (started by initialize_all)
        self._fleet: fleet.Fleet | None = None

    @property
    def chain(self) -> Chain:
        """The chain a Pipeline serves from: ``chain.current`` is the snapshot new requests run on."""
        return self._snapshots.chain

    @property
    def services(self) -> Services:
        """The service locator plugins use (``ctx.get_service(name)``): host services, then plugins."""
        return self._registry.services

    # -- registration --------------------------------------------------------

    def register(self, plugin: Any, *, priority: int | None = None, failure_policy: str | None = None,
                 config: dict[str, Any] | None = None) -> str:
        """Register a plugin instance (in-process: the caller trusts its code) and return its name.

        It starts with the next ``initialize_all()`` (or, once serving, before the next request).
        :raises PluginValidationError: for a missing or bad name or version, a bad dependency
            constraint, or a name already taken.
        """
        settings = dict(self.config.plugin_settings.get(getattr(plugin, "name", None) or "", {}))
        settings.update(config or {})
        record = validate(plugin, priority=priority, failure_policy=failure_policy, config=settings)
        self._add_record(record)
        log.info("registered plugin %r %s (%s)", record.name, record.version, ", ".join(record.kinds))
        return record.name

    def _add_record(self, record: PluginRecord) -> None:
        self._registry.add(record)
        history.watch_plugin_logger(record.name)    # where its sandbox, if any, reports its helpers' failures
        self._snapshots.chain.ready = False

    def provide_service(self, name: str, service: Any) -> None:
        """Offer a host object to plugins under *name* (``ctx.get_service(name)``)."""
        self._registry.services.provide(name, service)

    async def load_plugins(self) -> Any:
        """Discover plugins in ``plugin_paths`` and entry points and register them.

        Never raises for one broken plugin: the report lists what is loaded (by this call or an earlier
        one) and what failed, and why.
        When nobody calls it, ``initialize_all()`` (lifespan startup, or the first request) does, once,
        if ``plugin_paths`` is set.
        """
        self._discovered = True
        report = await discover_all(self.config, self._registry)
        if self.config.strict and report.failed:
            for record in report.records:
                await discard(record, self._registry)
            raise StrictError("PluginConfig(strict=True): refusing to start", report.failed)
        for record in report.records:
            try:
                self._add_record(record)
                report.loaded.append(record.name)
            except PluginError as exc:
                report.failed[record.path or record.source] = str(exc)
        held = set()
        self._load_failures = {}    # discovery reports every failure again on each call
        for record in report.stand_ins:
            try:        # fail closed: the stand-in holds the file's place until it loads
                self._add_record(record)
                held.add(record.path)
            except PluginError as exc:
                log.error("%s", printable(f"no stand-in for {record.path}: {exc}"))
        for where, why in report.failed.items():
            log.error("could not load plugin %s: %s", printable(where), printable(why))
            if where not in held:
                self._load_failures[where] = why
        report_earlier(report, self._registry.records(), self.config)
        await self._start_if_running()
        return report

    async def load_plugin_from_path(self, path: str, *, sandbox: bool = False) -> list[str]:
        """Load the plugins of one file or package and start them if the manager runs.

        :raises PluginLoadError: naming the file and what to fix.
        """
        held = held_by(self._registry.records(), path)
        if held is not None and not sandbox:    # the file failed to load before: it takes its place now
            names = await hot_swap.replace_stand_in(self._registry, self._snapshots, held, path)
            await self._start_if_running()
            return names
        records = await load(path, self.config, sandbox=sandbox)
        added: list[PluginRecord] = []
        try:
            for record in records:
                self._add_record(record)
                added.append(record)
        except PluginError:     # a name taken: none of the file's plugins stays, nor their helpers
            for record in added:
                self._registry.remove(record.name)
            for record in records:
                await discard(record, self._registry)
            raise
        await self._start_if_running()
        if self._watcher is not None:
            self._watcher.refresh()
        return [r.name for r in records]

    # -- lifecycle -----------------------------------------------------------

    async def _start_if_running(self) -> None:
        """Start what was added while the manager serves (before that, initialize_all will)."""
        if self.status == "running":
            await self.initialize_all()

    async def initialize_all(self) -> None:
        """Start every plugin not yet started, in dependency order; idempotent.

        A plugin that fails is marked failed (with the reason in health), its dependents are
        not started, and the rest serve. ``plugin_paths`` that nobody loaded are loaded first.
        """
        if not self._discovered and self.config.plugin_paths and not self.config.auto_resolve_dependencies:
            # (with auto_resolve_dependencies, plugin_paths is where missing dependencies are found, one by one)
            await self.load_plugins()
        # Plugins loaded on another loop (asyncio.run() at import) serve on this one: the lock is one per
        # loop, the watcher starts its task here below, and sandboxed helpers move themselves when
        # started (SandboxedPlugin.initialize).
        async with self._snapshots.lock():
            await startup.start_pending(self._registry, self._snapshots, self._add_record)
            if self.config.strict and (failed := startup.strict_failures(self._registry, self._load_failures)):
                raise StrictError("PluginConfig(strict=True): refusing to serve", failed)
            self.status = "running"
            self._snapshots.chain.ready = True
            if self.config.hot_reload and self.config.reload_on_change:
                if self._watcher is None:
                    self._watcher = PluginWatcher(self, self._registry)
                self._watcher.start()  # idempotent
            if self.config.fleet is not None:
                self._fleet = self._fleet or fleet.Fleet(self.config, self._registry, self._reload_here)
                self._fleet.start()     # idempotent

    async def shutdown_all(self) -> None:
        """Stop every plugin in reverse dependency order, after in-flight requests finish."""
        if self._fleet is not None:
            await self._fleet.stop()
        if self._watcher is not None:
            # outside the lock: a reload under way holds it and finishes first
            await self._watcher.stop(self.config.drain_timeout + self.config.initialize_timeout
                                     + self.config.shutdown_timeout)
        self.status = "stopping"
        snapshots = self._snapshots
        async with snapshots.lock():
            snapshots.chain.ready = False
            self.status = "stopping"
            running = [r for r in self._registry.records() if r.state in ("active", "initialized")]
            for record in running:
                record.state = "draining"
            old = snapshots.rebuild()
            await snapshots.drain(old)
            order, _ = self._registry.plan([r.name for r in running])
            for name in reversed(order):
                stopping = self._registry.get(name)
                if stopping is not None:
                    await self._registry.stop(stopping)
            for record in self._registry.records():
                if record not in running:
                    await end_helpers(record)
            self.status = "closed"

    async def unload_plugin(self, name: str, *, cascade: bool = False) -> list[str]:
        """Stop and remove a plugin; returns the names unloaded.

        :raises PluginError: if others depend on it and *cascade* is False.
        """
        record = self._registry.need(name)
        dependents = self._registry.dependents(name)
        if dependents and not cascade:
            raise PluginError(
                f"cannot unload {name!r}: {', '.join(dependents)} depend(s) on it; unload those first "
                "or call unload_plugin(name, cascade=True)", plugin_name=name)
        unloaded: list[str] = []
        for dep in dependents:
            if self._registry.get(dep) is not None:
                unloaded += await self.unload_plugin(dep, cascade=True)
        snapshots = self._snapshots
        async with snapshots.lock():
            was_running = record.state in ("active", "initialized")
            record.state = "draining"
            old = snapshots.rebuild()
            await snapshots.drain(old, [record.plugin])
            if was_running:
                await self._registry.stop(record)
            self._registry.remove(name)
            await discard(record, self._registry)
        self._registry.services.storage.forget(name)
        if self._watcher is not None:
            self._watcher.forget(name)
        log.info("unloaded plugin %r", name)
        return unloaded + [name]

    async def reload_plugin(self, name: str, *, path: str | None = None) -> None:
        """Load a plugin's file again beside the running version, start it, swap, drain the old.

        If the new version fails, the old one keeps serving and the error is raised.
        A ``path`` loads the new version from another file (a renamed plugin file).
        State the old version exports is handed to the new one (``export_state``/``import_state``).
        With ``PluginConfig(fleet=...)`` a reload that worked is published to the other workers.
        """
        if self._fleet is None:
            await self._reload_here(name, path)
        else:
            await self._fleet.reload(name, lambda: self._reload_here(name, path))

    async def _reload_here(self, name: str, path: str | None = None) -> None:
        # One reload at a time: a second one (the API's beside the watcher's, two operators) starts from
        # the version the first left serving, so no version is stopped twice and none is left running.
        loop = asyncio.get_running_loop()
        if self._reload_lock is None or self._reload_lock[1] is not loop:
            self._reload_lock = (asyncio.Lock(), loop)
        async with self._reload_lock[0]:
            old = self._registry.get(name)
            waiting = await history.timed_reload(
                self._history, name, old and old.version, hot_swap.reload_plugin(self._registry, self._snapshots,
                                                                                   name, path),
                lambda: (new := self._registry.get(name)) and new.version)
        if self._watcher is not None:
            self._watcher.forget(name)
        if waiting:         # it took a stand-in's place
            await self._start_if_running()

    # -- inspection ----------------------------------------------------------

    def get_plugin(self, name: str) -> Any:
        """The plugin instance named *name*."""
        return self._registry.need(name).plugin

    def _of_kind(self, name: str, kind: str, what: str) -> Any:
        record = self._registry.get(name)
        if record is None or kind not in record.kinds:
            names = ", ".join(r.name for r in self._registry.records() if kind in r.kinds) or "none"
            raise PluginNotFoundError(f"no {what} named {name!r}; registered {what}s: {names}",
                                      plugin_name=name)
        if record.state == "failed":
            raise PluginError(f"{what} {name!r} failed: {record.error}", plugin_name=name)
        return record.plugin

    def get_auth_provider(self, name: str) -> Any:
        """The AuthPlugin named *name*."""
        return self._of_kind(name, "auth", "auth provider")

    def get_storage_engine(self, name: str | None = None) -> Any:
        """The StoragePlugin named *name*; without a name, the first in (priority, name) order."""
        if name is None:
            ready = sorted((r for r in self._registry.records()
                            if "storage" in r.kinds and r.state != "failed"),
                           key=lambda r: (r.priority, r.name))
            if not ready:
                raise PluginNotFoundError("no storage engine is registered: register a StoragePlugin "
                                          "(covet_pipe.builtin.MemoryStorage, for one)", plugin_name=None)
            return self._registry.services.storage.view(ready[0].name, ready[0].plugin)
        return self._registry.services.storage.view(name, self._of_kind(name, "storage", "storage engine"))

    def storage_counts(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Calls made to each registered storage engine through :meth:`get_storage_engine` or a service
        lookup: engine name -> operation (get, set, delete, exists, expire, ttl) -> (calls, errors)."""
        counts = self._registry.services.storage.counts()
        return {name: per_op for name, per_op in sorted(counts.items())
                if (r := self._registry.get(name)) is not None and "storage" in r.kinds}

    def protocol_records(self) -> tuple[PluginRecord, ...]:
        """The active protocol plugins in (priority, name) order, as of the last chain swap."""
        return self._snapshots.protocols

    def get_protocol_handler(self, protocol: str) -> Any:
        """The first ProtocolPlugin, in (priority, name) order, that speaks *protocol*."""
        for record in self._registry.records():
            if "protocol" in record.kinds and record.state != "failed" \
                    and protocol in record.plugin.supported_protocols():
                return record.plugin
        raise PluginNotFoundError(f"no protocol plugin speaks {protocol!r}", plugin_name=None)

    def get_middleware_chain(self) -> tuple[ChainEntry, ...]:
        """The current chain's middleware in request order, read-only."""
        out = []
        for e in self._snapshots.current.entries:
            record = self._registry.get(e.name)
            out.append(ChainEntry(e.name, e.version, e.priority, e.kind, e.style,
                                  record.state if record is not None else "stopped", tuple(sorted(e.protocols))))
        return tuple(out)

    def reload_history(self) -> list[dict[str, Any]]:
        """The last reloads (API, file watcher, code), newest first: name, old_version, new_version, ok, error,
        duration_s, at (epoch seconds)."""
        return history.reload_history(self._history)

    def recent_errors(self) -> list[dict[str, Any]]:
        """The last errors this manager's plugins raised (hooks, initialize, shutdown), newest first: plugin,
        hook, error, at."""
        return history.recent_errors(self._history)

    def reload_counts(self) -> dict[str, dict[str, int]]:
        """Per plugin, how many reloads worked (``ok``) and failed (``failed``)."""
        return history.reload_counts(self._history)

    def list_plugins(self) -> list[dict[str, Any]]:
        """Every plugin with its version, kinds, style, state, counters and metadata."""
        return plugin_list(self._registry.records())

    def log_plugins(self) -> None:
        """Log one line per plugin (name, version, kind, priority, sandboxed, path) and per failure."""
        for level, line in summary_lines(self._registry.records(), self._load_failures):
            log.log(level, "%s", line)

    async def get_health_status(self) -> dict[str, Any]:
        """Overall status and, per plugin, state, error and counters."""
        watcher = self._watcher
        status, plugins = plugin_health(self._registry.records(),
                                        watcher.reload_errors if watcher is not None else {})
        if self._fleet is not None:
            status = self._fleet.overall(status)
        snap = self._snapshots.current
        out = {"status": status, "manager": self.status, "chain_generation": snap.generation,
               "inflight": snap.inflight, "plugins": plugins,
               "protocol_chain": [r.name for r in self._snapshots.protocols]}
        if watcher is not None:
            out["watcher"] = {"running": watcher.running, "reloads": watcher.reloads,
                              "errors": dict(watcher.errors)}
        if self._fleet is not None:
            out["fleet"] = self._fleet.health()
        return out

    def fleet_health(self) -> dict[str, Any] | None:
        """The fleet part of :meth:`get_health_status` (None without ``PluginConfig(fleet=...)``)."""
        return self._fleet.health() if self._fleet is not None else None
