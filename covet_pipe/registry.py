"""The registry: plugin records, their chain entries, dependency order and lifecycle states.

A plugin becomes a record through :func:`covet_pipe.validation.validate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, cast

from packaging.requirements import Requirement
from packaging.version import Version

from covet_pipe._core import Entry, MiddlewareAction, PluginStats
from covet_pipe._graph import start_order
from covet_pipe.config import PluginConfig
from covet_pipe.context import PluginContext, Services
from covet_pipe.errors import DependencyCycleError, PluginNotFoundError, PluginValidationError
from covet_pipe.logsafe import logger, printable
from covet_pipe.plugin import overridden_hook

if TYPE_CHECKING:
    from covet_pipe.native import NativePlugin

__all__ = ["Registry", "PluginRecord", "ALL_PROTOCOLS"]

#: a plugin's exceptions are logged with their messages escaped, tracebacks included
log = logger("covet_pipe.registry")

#: the protocols of a stand-in that does not know its own: it refuses every protocol there is
ALL_PROTOCOLS = frozenset({"*"})
#: protocols every chain has (covet-pipe's listener and any ASGI server speak them)
_BASE_PROTOCOLS = frozenset({"http", "websocket"})


@dataclass(eq=False)
class PluginRecord:
    """What the registry knows of one plugin."""

    plugin: Any
    name: str
    version: Version
    priority: int
    requires: list[Requirement]
    #: each dependency as the plugin wrote it, by name (messages quote these)
    specs: dict[str, str]
    kinds: tuple[str, ...]
    style: str | None
    source: str
    failure_policy: str
    protocols: frozenset[str]
    config: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    #: registered -> initialized -> active -> draining -> stopped, or failed
    state: str = "registered"
    error: str | None = None
    #: protocol -> the core's counters for this plugin under it (kept across reloads)
    protocol_stats: dict[str, PluginStats] = field(default_factory=dict)
    #: the fresh module the plugin was loaded from (dropped from sys.modules when the plugin is gone)
    module: Any = None

    @property
    def stats(self) -> PluginStats:
        """The plugin's counters summed over its protocols (the protocol's own with only one)."""
        per = self.protocol_stats
        if len(per) == 1:
            return next(iter(per.values()))
        return PluginStats.merged(per.values())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": str(self.version),
            "priority": self.priority,
            "kinds": list(self.kinds),
            "style": self.style,
            "state": self.state,
            "source": self.source,
            "path": self.path,
            "dependencies": [self.specs.get(r.name, str(r)) for r in self.requires],
            "protocols": sorted(self.protocols),
            "failure_policy": self.failure_policy,
            "error": self.error,
        }


def make_entry(record: PluginRecord) -> Entry:
    """The core's view of a middleware plugin."""
    plugin = record.plugin
    req = overridden_hook(plugin, "process_request")
    resp = overridden_hook(plugin, "process_response")
    if record.style == "call_next":
        req = plugin.process_request
    native = getattr(plugin, "_covet_native", False)
    entry = Entry(
        plugin, name=record.name, version=str(record.version), priority=record.priority,
        kind="native" if native else "middleware", style=record.style or "hook",
        protocols=record.protocols, req_hook=None if native else req,
        resp_hook=None if native else resp,
        req_async=req is not None and inspect.iscoroutinefunction(req),
        resp_async=resp is not None and inspect.iscoroutinefunction(resp),
        fail_open=record.failure_policy == "open",
        needs_body=bool(getattr(plugin, "needs_body", False)), protocol_stats=record.protocol_stats,
        paths=getattr(plugin, "paths", None),
    )
    if native:
        # The core calls these C pointers directly; the plugin keeps its library loaded. Only
        # NativePlugin sets _covet_native (imported for its type only: it loads cffi).
        hooks = cast("NativePlugin", plugin).native_hooks()
        entry.set_native(*hooks, keep=plugin)
    return entry


def unavailable_entry(record: PluginRecord, every: frozenset[str] = _BASE_PROTOCOLS) -> Entry:
    """A stand-in for a fail-closed middleware that failed to load or start: it answers 503.

    :param every: the protocols a record with ``ALL_PROTOCOLS`` refuses (see
        :meth:`Registry.every_protocol`).
    """

    def refuse(request: Any, ctx: Any) -> Any:
        return MiddlewareAction.reject(503, "Service Unavailable")

    protocols = every if "*" in record.protocols else record.protocols
    return Entry(
        record.plugin, name=record.name, version=str(record.version), priority=record.priority,
        kind="middleware", style="hook", protocols=protocols, req_hook=refuse,
        fail_open=False, protocol_stats=record.protocol_stats,
    )


def _taken(old: PluginRecord, new: PluginRecord) -> str:
    """Why *new* cannot be added beside *old*, which has its name: the real cause and what to do."""
    if old.path and new.path and os.path.realpath(old.path) == os.path.realpath(new.path):
        return (f"plugin {new.name!r} from {new.path} is already loaded from that same file; a file loads "
                f"once: drop the second load, or call reload_plugin({new.name!r}) to load a new version of it")
    where = f"({old.path})" if old.path else f"({old.source})"
    if new.path is None:     # an instance registered in code: its class is what the author knows
        fix = f"rename {type(new.plugin).__name__}"
    elif new.source == "native":
        fix = f"rename the plugin of {new.path} (the name in its descriptor, or name in its manifest)"
    else:
        fix = f"rename the plugin of {new.path} (its name attribute, or name in its manifest)"
    return f"a plugin named {new.name!r} is already registered {where}; plugin names are unique: {fix} or unload the other first"


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Registry:
    """Plugins by name, their dependency order, and their lifecycle."""

    def __init__(self, config: PluginConfig) -> None:
        self.config = config
        self._records: dict[str, PluginRecord] = {}
        self.services = Services(self)

    # -- records -------------------------------------------------------------

    def get(self, name: str) -> PluginRecord | None:
        return self._records.get(name)

    def need(self, name: str) -> PluginRecord:
        """The record named *name*.

        :raises PluginNotFoundError: naming the plugins that are registered.
        """
        record = self._records.get(name)
        if record is None:
            names = ", ".join(r.name for r in self.records()) or "none"
            raise PluginNotFoundError(f"no plugin named {name!r}; registered: {names}", plugin_name=name)
        return record

    def records(self) -> list[PluginRecord]:
        """Every record, in (priority, name) order."""
        return sorted(self._records.values(), key=lambda r: (r.priority, r.name))

    def add(self, record: PluginRecord) -> None:
        """Add a validated record.

        :raises PluginValidationError: if the name is taken.
        """
        old = self._records.get(record.name)
        if old is not None and old.state not in ("stopped",):
            raise PluginValidationError(_taken(old, record), plugin_name=record.name, path=record.path)
        self.replace(record)

    def remove(self, name: str) -> PluginRecord | None:
        return self._records.pop(name, None)

    def replace(self, record: PluginRecord) -> None:
        """Put *record* in the place of the one of its name, whatever that one's state.

        A reload puts its new version in while it starts (and the old one back if it fails); unlike
        :meth:`add` nothing is checked. The operator's failure policy applies, as it does in :meth:`add`.
        """
        policy = self.config.policy_for(record.name, record.path)
        if policy is not None:      # the operator's word wins over the plugin's and its manifest's
            record.failure_policy = policy
            with contextlib.suppress(AttributeError):
                record.plugin.failure_policy = policy
        self._records[record.name] = record

    def every_protocol(self) -> frozenset[str]:
        """Every protocol a request may come in: HTTP, websocket, what protocol plugins and middleware name."""
        out = set(_BASE_PROTOCOLS)
        for r in self._records.values():
            out.update(p for p in r.protocols if p != "*")
            if "protocol" in r.kinds and r.state != "failed":
                with contextlib.suppress(Exception):   # a plugin's own method: never break a rebuild
                    out.update(r.plugin.supported_protocols())
        return frozenset(out)

    def dependents(self, name: str) -> list[str]:
        """Names of plugins that declare a dependency on *name*."""
        return sorted(r.name for r in self._records.values()
                      if r.state != "stopped" and any(q.name == name for q in r.requires))

    # -- dependency checks ---------------------------------------------------

    def dependency_problem(self, record: PluginRecord) -> str | None:
        """Why *record* cannot start because of a dependency, or None."""
        for req in record.requires:
            spec = record.specs.get(req.name, str(req))
            dep = self._records.get(req.name)
            if dep is None or dep.state == "stopped":
                available = ", ".join(
                    f"{r.name} {r.version}" for r in self.records() if r.state != "stopped") or "none"
                hint = ("" if self.config.auto_resolve_dependencies else
                        " or set auto_resolve_dependencies=True to look for it in plugin_paths and entry points")
                return (f"plugin {record.name!r} needs {spec!r}, which is not registered "
                        f"(registered: {available}); register {req.name!r}{hint}")
            if req.specifier and not req.specifier.contains(dep.version, prereleases=True):
                return (f"plugin {record.name!r} needs {spec!r}, but {dep.name} {dep.version} is "
                        f"registered; install a {dep.name} that satisfies {str(req.specifier)!r} or relax "
                        f"the constraint in {record.name}'s dependencies")
            if dep.state == "failed":
                return (f"plugin {record.name!r} was not started: its dependency {dep.name!r} failed "
                        f"({dep.error})")
        return None

    def plan(self, names: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """Start order for *names* (and the failures found while planning).

        :returns: ``(order, failures)``; failures maps a name to its error message.
        """
        wanted = set(names)
        edges = {n: [q.name for q in self._records[n].requires] for n in wanted}
        key = lambda n: (self._records[n].priority, n)  # noqa: E731
        order, cycles = start_order(edges, key)
        failures: dict[str, str] = {}
        for cyc in cycles:
            text = " -> ".join(cyc)
            if self.config.allow_circular_dependencies:
                log.warning("dependency cycle %s: its members start in (priority, name) order "
                            "because allow_circular_dependencies=True", text)
                continue
            err = DependencyCycleError(
                f"dependency cycle: {text}; remove one of these dependencies or set "
                "allow_circular_dependencies=True", cycle=cyc)
            for n in set(cyc):
                failures[n] = str(err)
        return order, failures

    # -- lifecycle -----------------------------------------------------------

    async def start(self, record: PluginRecord) -> bool:
        """Initialise one plugin; on failure mark it failed and say why."""
        ctx = PluginContext(record.name, self.services, record.config)
        try:
            await asyncio.wait_for(_maybe_await(record.plugin.initialize(ctx)),
                                   self.config.initialize_timeout)
        except asyncio.TimeoutError:
            self.fail(record, f"initialize() did not finish within {self.config.initialize_timeout} s "
                      "(PluginConfig.initialize_timeout)")
            return False
        except Exception as exc:
            self.fail(record, f"initialize() raised {type(exc).__name__}: {exc}", exc)
            return False
        record.state = "initialized"
        record.error = None
        return True

    def fail(self, record: PluginRecord, message: str, exc: BaseException | None = None) -> None:
        record.state = "failed"
        record.error = message
        log.error("plugin %r %s failed: %s; the other plugins keep serving", record.name,
                  record.version, printable(message), exc_info=exc)

    async def stop(self, record: PluginRecord) -> None:
        """Shut one plugin down; errors are logged, never raised."""
        try:
            await asyncio.wait_for(_maybe_await(record.plugin.shutdown()), self.config.shutdown_timeout)
        except asyncio.TimeoutError:
            log.error("plugin %r: shutdown() did not finish within %s s", record.name,
                      self.config.shutdown_timeout)
        except Exception as exc:
            log.error("plugin %r: shutdown() raised %s: %s", record.name, type(exc).__name__,
                      printable(str(exc)), exc_info=exc)
        if record.state != "failed":
            record.state = "stopped"
