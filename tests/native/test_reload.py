"""Reload safety: a rebuilt library loads beside the one still in use, from a content-addressed copy."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from covet_pipe import Pipeline, PluginConfig, PluginManager, wrap
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
    pinned = manager.chain.current          # what a request in flight holds
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


def test_watcher_reloads_a_rebuilt_library_and_keeps_it_on_a_wrong_abi(tmp_path: Path, serve: Any) -> None:
    import os
    import time

    import httpx

    v1, v2 = _builds()
    wrong = probe("reloadable", tag="v9", VERSION='"9.0.0"', ABI_VERSION=99).read_bytes()
    folder = tmp_path / "watched"
    folder.mkdir()
    path = folder / "reloadable.so"
    path.write_bytes(v1)

    def rebuild(data: bytes) -> None:   # as a build writes it: a new file moved over the old one
        tmp = folder / ".reloadable.so.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)

    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False, hot_reload=True,
                                         reload_on_change=True))
    assert asyncio.run(manager.load_plugins()).loaded == ["reloadable"]
    with serve(wrap(echo_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        def health() -> dict:
            return asyncio.run_coroutine_threadsafe(manager.get_health_status(), s.loop).result(5)

        def until(check: Any, what: str) -> None:
            deadline = time.monotonic() + 5
            while not check():
                assert time.monotonic() < deadline, f"{what}: not within 5 s"
                time.sleep(0.02)

        assert client.get("/").headers["x-resp-order"] == "v1"
        rebuild(v2)
        until(lambda: client.get("/").headers["x-resp-order"] == "v2", "v2 served")
        rebuild(wrong)
        until(lambda: "reload_error" in health()["plugins"]["reloadable"], "ABI error in health")
        assert "99" in health()["plugins"]["reloadable"]["reload_error"]
        assert client.get("/").headers["x-resp-order"] == "v2"
        rebuild(v1)
        until(lambda: client.get("/").headers["x-resp-order"] == "v1", "v1 served again")
        assert "reload_error" not in health()["plugins"]["reloadable"]
