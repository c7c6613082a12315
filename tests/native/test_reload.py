"""Reload safety: a rebuilt library loads beside the one still in use, from a content-addressed copy."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from covet_pipe import Pipeline, PluginConfig, PluginManager
from covet_pipe.native import NativePlugin, load_native
from covet_pipe.testing import call
from tests._helpers import echo_app
from tests.native._cplugins import cplugins, probe, stats  # noqa: F401 (the fixture)

#: builds the C test plugins under pytest's temporary folders
pytestmark = pytest.mark.usefixtures("cplugins")


def _builds() -> tuple[bytes, bytes]:
    """Two builds of one plugin, 'reloadable': v1 (1.0.0, tag v1) and v2 (2.0.0, tag v2)."""
    v1 = probe("reloadable", tag="v1", VERSION='"1.0.0"')
    v2 = probe("reloadable", tag="v2", VERSION='"2.0.0"')
    return v1.read_bytes(), v2.read_bytes()


async def _tag_of(plugin: NativePlugin) -> str:
    manager = PluginManager()
    manager.register(plugin)
    await manager.initialize_all()
    r = await call(Pipeline(echo_app, manager))
    await manager.shutdown_all()
    return r.headers["x-resp-order"]


async def test_rebuilt_library_at_same_path_loads_beside_the_old_one(tmp_path: Path) -> None:
    v1, v2 = _builds()
    path = tmp_path / "reloadable.so"
    path.write_bytes(v1)
    old = load_native(path)
    path.write_bytes(v2)          # a rebuild overwrites the file while v1 is loaded
    new = load_native(path)
    assert old.loaded_from != new.loaded_from
    assert hashlib.sha256(Path(old.loaded_from or "").read_bytes()).digest() == hashlib.sha256(v1).digest()
    assert (old.version, new.version) == ("1.0.0", "2.0.0")
    # both answer at once, each with its own code
    a, b = PluginManager(), PluginManager()
    a.register(old)
    b.register(new)
    await a.initialize_all()
    await b.initialize_all()
    pa, pb = Pipeline(echo_app, a), Pipeline(echo_app, b)
    tags = [(await call(p)).headers["x-resp-order"] for p in (pa, pb, pa, pb)]
    assert tags == ["v1", "v2", "v1", "v2"]
    await a.shutdown_all()
    await b.shutdown_all()


def test_same_content_loads_from_the_same_cache_path(tmp_path: Path) -> None:
    v1, _ = _builds()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "reloadable.so", tmp_path / "b" / "reloadable.so"
    first.write_bytes(v1)
    second.write_bytes(v1)
    assert load_native(first).loaded_from == load_native(second).loaded_from


async def test_reload_while_request_in_flight_finishes_it_on_the_old_library(tmp_path: Path) -> None:
    v1, v2 = _builds()
    path = tmp_path / "reloadable.so"
    path.write_bytes(v1)
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow_app(scope: dict, receive: Any, send: Any) -> None:
        if scope.get("path") == "/slow":
            entered.set()
            await gate.wait()
        await echo_app(scope, receive, send)

    manager = PluginManager(PluginConfig(hot_reload=True, drain_timeout=20))
    await manager.load_plugin_from_path(str(path))
    await manager.initialize_all()
    old = manager.get_plugin("reloadable")
    before = stats(old)     # counters of this build, shared by every load of the same bytes
    pipeline = Pipeline(slow_app, manager)
    slow = asyncio.create_task(call(pipeline, path="/slow"))
    await asyncio.wait_for(entered.wait(), 10)

    path.write_bytes(v2)
    reload = asyncio.create_task(manager.reload_plugin("reloadable"))
    for _ in range(500):
        if manager.get_middleware_chain()[0].version == "2.0.0":
            break
        await asyncio.sleep(0.01)
    fresh = await call(pipeline, path="/fast")
    assert fresh.headers["x-resp-order"] == "v2"
    assert not reload.done(), "the old version drains: a request still runs on it"
    assert stats(old)["shutdown"] == before["shutdown"]

    gate.set()
    finished = await asyncio.wait_for(slow, 10)
    await asyncio.wait_for(reload, 10)
    assert finished.status == 200
    assert finished.headers["x-resp-order"] == "v1", "the in-flight request ended on the library it began on"
    assert stats(old)["done"] == before["done"] + 1
    assert stats(old)["shutdown"] == before["shutdown"] + 1, "shut down once its last request ended"
    await manager.shutdown_all()


def _mapped(path: str) -> bool:
    return path in Path("/proc/self/maps").read_text()


async def test_unloaded_plugin_library_stays_mapped_while_a_snapshot_holds_it(tmp_path: Path) -> None:
    v1, _ = _builds()
    path = tmp_path / "reloadable.so"
    path.write_bytes(v1)
    manager = PluginManager()
    await manager.load_plugin_from_path(str(path))
    await manager.initialize_all()
    pinned = manager._chain.current          # what a request in flight holds
    plugin = manager.get_plugin("reloadable")
    copy = plugin.loaded_from
    del plugin
    await manager.unload_plugin("reloadable")
    assert manager.get_middleware_chain() == ()
    # the snapshot -> its entry -> the NativePlugin -> the cffi library: still loaded
    (entry,) = pinned.entries
    assert isinstance(entry.plugin, NativePlugin) and entry.plugin._keep is not None
    assert copy is not None and _mapped(copy)
    assert await _tag_of(load_native(path)) == "v1"
