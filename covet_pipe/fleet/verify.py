"""The content-hash check: a host loads a change only when its own file is what the origin loaded.

The hash is :func:`covet_pipe.reload.content_hash` of the plugin's file (with its manifest, where its
``[config]`` lives) or of every file of its package: the same the file watcher compares.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from covet_pipe.registry import Registry
from covet_pipe.reload import content_hash

__all__ = ["file_hash", "local_hash", "mismatch"]


def file_hash(registry: Registry, name: str) -> str | None:
    """The content hash of plugin *name*'s file here; None when it has no file (or the file is gone)."""
    record = registry.get(name)
    if record is None or record.path is None:
        return None
    return content_hash(Path(record.path).resolve())


async def local_hash(registry: Registry, name: str) -> str | None:
    """:func:`file_hash`, read off the event loop."""
    return await asyncio.to_thread(file_hash, registry, name)


async def mismatch(registry: Registry, name: str, expected: str) -> str | None:
    """Why this host must not load the change of *name* to content *expected*; None when its file matches."""
    record = registry.get(name)
    if record is None:
        return f"no plugin named {name!r} is loaded here"
    if record.path is None:
        return f"plugin {name!r} was registered here as an instance, so there is no file to reload it from"
    here = await local_hash(registry, name)
    if here is None:
        return f"the file of plugin {name!r} ({record.path}) cannot be read here"
    if here != expected:
        return (f"the file of plugin {name!r} here ({record.path}) has content {here[:12]}..., the change was "
                f"made from {expected[:12]}...; deploy the same file to this host (it reloads once it matches)")
    return None
