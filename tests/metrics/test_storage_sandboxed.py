"""A sandboxed storage engine is counted like an in-process one: calls through the manager's view.

The engine runs in a real helper process (seccomp, Landlock); the manager hands out its proxy seen
through the counting view, so the scrape's storage families count each call and each that raised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from covet_pipe import PluginManager
from covet_pipe.metrics.readings import read
from covet_pipe.sandbox.proxy import SandboxedPluginError
from covet_pipe.storage_counts import is_counted

ENGINE = '''\
from covet_pipe import StoragePlugin


class DictStore(StoragePlugin):
    name = "dictstore"
    version = "1.0.0"

    def __init__(self):
        self.data = {}

    async def get(self, key):
        return self.data.get(key)

    async def set(self, key, value, ttl=None):
        if not isinstance(value, bytes):
            raise TypeError("values are bytes")
        self.data[key] = value

    async def delete(self, key):
        return self.data.pop(key, None) is not None

    async def exists(self, key):
        return key in self.data


plugin = DictStore()
'''


async def test_calls_to_a_sandboxed_engine_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "dictstore.py"
    path.write_text(ENGINE)
    manager = PluginManager()
    await manager.load_plugin_from_path(str(path), sandbox=True)
    await manager.initialize_all()
    try:
        store = manager.get_storage_engine("dictstore")
        assert is_counted(store)
        assert (await manager.get_health_status())["plugins"]["dictstore"]["sandbox"]["state"] == "serving"
        await store.set("k", b"v")
        assert await store.get("k") == b"v"
        assert await store.exists("k") is True
        assert await store.delete("k") is True
        with pytest.raises(SandboxedPluginError, match="TypeError: values are bytes"):
            await store.set("k", "text")            # raises in the helper: an error of `set`
        counts = manager.storage_counts()["dictstore"]
        assert counts["set"] == (2, 1) and counts["get"] == (1, 0)
        assert counts["exists"] == (1, 0) and counts["delete"] == (1, 0)
        calls = dict(read(manager, server=False)["covet_pipe_storage_calls"])
        errors = dict(read(manager, server=False)["covet_pipe_storage_errors"])
        assert calls[("dictstore", "set")] == 2 and errors[("dictstore", "set")] == 1
    finally:
        await manager.shutdown_all()
