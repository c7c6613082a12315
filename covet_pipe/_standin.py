"""Stand-ins for plugin files that failed to load: they keep the file's place, closed, until it loads.

A file in ``plugin_paths`` that cannot be loaded (a library built for another ABI or without its
entry symbol, a file that is not a library, a manifest that does not parse, a module that raises
on import or has a syntax error, a sandbox that does not start) is registered as a *stand-in*: a
``failed`` middleware record carrying the file's path and the reason. Fail closed (the default),
the chain holds a 503 entry in its place on the protocols it would have served (every protocol
when its manifest cannot be read or does not list them), like a plugin whose ``initialize`` failed;
``failure_policy = "open"`` (in its manifest, or the operator's ``PluginConfig.failure_policies``)
leaves it out. Hot reload replaces the stand-in with whatever the file defines once it loads
(``hot_swap.replace_stand_in``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from packaging.version import InvalidVersion, Version

from covet_pipe.config import PluginConfig
from covet_pipe.plugin import MiddlewarePlugin
from covet_pipe.registry import ALL_PROTOCOLS, PluginRecord

__all__ = ["LoadFailed", "stand_in", "is_stand_in", "held_by"]

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class LoadFailed(MiddlewarePlugin):
    """The plugin of a stand-in: it runs no hook of its own (the chain holds a 503 entry for it)."""

    style = "hook"

    def __init__(self, name: str, path: str, reason: str, protocols: frozenset[str], policy: str) -> None:
        self.name = name
        self.version = "0"
        self.protocols = protocols
        self.failure_policy = policy
        #: the file that failed to load, and why (health shows both)
        self.path = path
        self.load_failure = reason

    def metadata(self) -> dict[str, Any]:
        return {"description": f"stand-in for {self.path}, which failed to load", "reason": self.load_failure}


def is_stand_in(record: PluginRecord) -> bool:
    """Whether *record* stands in for a file that failed to load."""
    return isinstance(record.plugin, LoadFailed)


def held_by(records: Iterable[PluginRecord], path: str | Path) -> PluginRecord | None:
    """The stand-in holding the place of the file at *path*, if one does."""
    real = os.path.realpath(path)
    for record in records:
        if is_stand_in(record) and record.path and os.path.realpath(record.path) == real:
            return record
    return None


def _name_from(path: Path) -> str:
    base = path.name.split(".", 1)[0] if path.suffix == ".so" else (path.name if path.is_dir() else path.stem)
    return _BAD_CHARS.sub("_", base).strip("_.-") or "plugin"


def stand_in(path: str | Path, reason: str, config: PluginConfig,
             manifest: dict[str, Any] | None) -> PluginRecord:
    """The failed record that takes the place of the file at *path*.

    :param manifest: the file's manifest when it could be read (None when it could not or
        there is none): its name, version, priority, protocols and failure_policy are used.
    """
    p = Path(path)
    m = manifest or {}
    given = m.get("name")
    name = given if isinstance(given, str) and given else _name_from(p)
    try:
        version = Version(str(m.get("version", "0")))
    except InvalidVersion:
        version = Version("0")
    protocols = frozenset(m["protocols"]) if m.get("protocols") else ALL_PROTOCOLS
    policy = str(config.policy_for(name, str(p)) or m.get("failure_policy") or "closed")
    plugin = LoadFailed(name, str(p), reason, protocols, policy)
    priority = m.get("priority", 1000)
    record = PluginRecord(
        plugin=plugin, name=name, version=version, priority=priority if isinstance(priority, int) else 1000,
        requires=[], specs={}, kinds=("middleware",), style="hook", source="load-failed",
        failure_policy=policy, protocols=protocols, path=str(p), state="failed",
        error=f"could not be loaded: {reason}",
    )
    return record

