"""Validation: a plugin object checked field by field (name, version, priority, dependencies, protocols,
style, paths) and made into a :class:`~covet_pipe.registry.PluginRecord`, or refused naming the plugin, the
field and a correct value."""

from __future__ import annotations

import inspect
import re
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from covet_pipe.errors import PluginValidationError
from covet_pipe.plugin import MiddlewarePlugin, Plugin, middleware_style, plugin_kinds
from covet_pipe.registry import PluginRecord
from covet_pipe.routing import check_paths

__all__ = ["validate"]

#: what a call_next plugin can wrap (the core's _segments)
_CALL_NEXT_PROTOCOLS = frozenset({"http", "websocket"})

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")


def _attr(plugin: Any, name: str, default: Any = None) -> Any:
    try:
        return getattr(plugin, name, default)
    except Exception as exc:  # a property that raises
        raise PluginValidationError(
            f"plugin {type(plugin).__name__}: reading {name!r} raised {type(exc).__name__}: {exc}",
            plugin_name=None) from exc


def validate(plugin: Any, *, priority: int | None = None, failure_policy: str | None = None,
             source: str = "registered", path: str | None = None,
             config: dict[str, Any] | None = None) -> PluginRecord:
    """Check a plugin's declaration and make its record.

    :raises PluginValidationError: naming the plugin, the field and a correct value.
    """
    cls = type(plugin).__name__
    where = f" (from {path})" if path else ""
    if not isinstance(plugin, Plugin):
        raise PluginValidationError(
            f"{cls}{where} is not a plugin: derive it from covet_pipe.Plugin, MiddlewarePlugin, "
            "AuthPlugin, StoragePlugin or ProtocolPlugin", path=path)
    name = _attr(plugin, "name")
    if not isinstance(name, str) or not name:
        raise PluginValidationError(
            f"plugin class {cls}{where} has no name: set a class attribute such as "
            f"name = \"{re.sub(r'(?<!^)(?=[A-Z])', '_', cls).lower()}\"", path=path)
    if not _NAME.match(name):
        raise PluginValidationError(
            f"plugin name {name!r} of {cls}{where} is not valid: use letters, digits, '_', '-' and '.', "
            "starting and ending with a letter or digit", plugin_name=name, path=path)
    raw_version = _attr(plugin, "version")
    if raw_version is None:
        raise PluginValidationError(
            f"plugin {name!r}{where} has no version: set version = \"1.0.0\" (PEP 440)",
            plugin_name=name, path=path)
    try:
        version = Version(str(raw_version))
    except InvalidVersion:
        raise PluginValidationError(
            f"plugin {name!r}{where} has version {raw_version!r}, which is not a PEP 440 version; "
            "use a version such as \"1.2.0\"", plugin_name=name, path=path) from None
    prio = _attr(plugin, "priority", 1000) if priority is None else priority
    if isinstance(prio, bool) or not isinstance(prio, int):
        raise PluginValidationError(
            f"plugin {name!r}{where}: priority must be an int (lower runs first), got {prio!r}",
            plugin_name=name, path=path)
    deps = _attr(plugin, "dependencies", ()) or ()
    if isinstance(deps, str):
        raise PluginValidationError(
            f"plugin {name!r}{where}: dependencies must be a list of strings, got the string {deps!r}; "
            f"write dependencies = [{deps!r}]", plugin_name=name, path=path)
    requires = []
    for spec in deps:
        try:
            req = Requirement(spec)
        except (InvalidRequirement, TypeError):
            raise PluginValidationError(
                f"plugin {name!r}{where}: dependency {spec!r} is not a valid constraint; write it like "
                "\"jwt_handler>=1.0,<2\" (a plugin name and PEP 440 specifiers)",
                plugin_name=name, path=path) from None
        if req.name == name:
            raise PluginValidationError(f"plugin {name!r}{where} depends on itself",
                                        plugin_name=name, path=path)
        requires.append(req)
    policy = failure_policy or _attr(plugin, "failure_policy", "closed")
    if policy not in ("closed", "open"):
        raise PluginValidationError(
            f"plugin {name!r}{where}: failure_policy must be 'closed' (answer 500) or 'open' "
            f"(skip the plugin), got {policy!r}", plugin_name=name, path=path)
    protocols = _attr(plugin, "protocols", ("http",))
    if isinstance(protocols, str):
        protocols = (protocols,)
    style = None
    if isinstance(plugin, MiddlewarePlugin):
        style = middleware_style(plugin)
        if style not in ("hook", "call_next"):
            raise PluginValidationError(
                f"plugin {name!r}{where}: style must be 'hook' or 'call_next', got {style!r}",
                plugin_name=name, path=path)
        if style == "call_next" and not inspect.iscoroutinefunction(plugin.process_request):
            raise PluginValidationError(
                f"plugin {name!r}{where} uses the call_next style, so process_request must be "
                "'async def process_request(self, request, call_next)'", plugin_name=name, path=path)
        wrapped_only = set(protocols) - _CALL_NEXT_PROTOCOLS
        if style == "call_next" and wrapped_only:
            raise PluginValidationError(
                f"plugin {name!r}{where} uses the call_next style, which wraps HTTP requests and websocket "
                f"handshakes only, but its protocols list {', '.join(map(repr, sorted(wrapped_only)))}: "
                "drop those, or write the plugin in the hook style (process_request(self, request, ctx)) "
                "to see them", plugin_name=name, path=path)
    check_paths(plugin, name, where, style, path)
    return PluginRecord(
        plugin=plugin, name=name, version=version, priority=prio, requires=requires,
        specs={r.name: str(s).strip() for r, s in zip(requires, deps)},
        kinds=plugin_kinds(plugin), style=style, source=source, failure_policy=policy,
        protocols=frozenset(protocols), config=dict(config or {}), path=path,
    )
