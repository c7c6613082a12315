"""Hot reload on change: edit a plugin file under a real uvicorn and the new version serves."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx

from covet_pipe import PluginConfig, PluginManager, wrap
from covet_pipe.reload import content_hash
from tests._helpers import lifespan

log = logging.getLogger("tests.reload")

#: generous bound: a change is expected within ~1 s; the test fails only past this
BOUND = 5.0

TEMPLATE = '''
from covet_pipe import MiddlewarePlugin

INITS = {inits!r}


class Versioned(MiddlewarePlugin):
    name = "versioned"
    version = "{version}"

    async def initialize(self, ctx):
        with open(INITS, "a") as f:
            f.write("{tag}\\n")
        {extra}

    def process_response(self, response, ctx):
        response.headers.add("x-version", "{tag}")


def create_plugin(config):
    return Versioned()
'''

SECOND = '''
from covet_pipe import MiddlewarePlugin


class Second(MiddlewarePlugin):
    name = "second"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.add("x-second", "yes")


plugin = Second()
'''


async def slow_app(scope: dict, receive: Any, send: Any) -> None:
    """200 after a short await, so requests are in flight while a reload swaps the chain."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    await asyncio.sleep(0.002)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def source(inits: Path, tag: str, version: str, extra: str = "pass") -> str:
    return TEMPLATE.format(inits=str(inits), tag=tag, version=version, extra=extra)


def wait_for(check: Callable[[], bool], what: str) -> float:
    """Poll *check* until true; the delay in seconds (fails past BOUND)."""
    start = time.monotonic()
    while True:
        if check():
            delay = time.monotonic() - start
            log.info("%s after %.3f s", what, delay)
            return delay
        if time.monotonic() - start > BOUND:
            raise AssertionError(f"{what}: not within {BOUND} s")
        time.sleep(0.02)


def setup(tmp_path: Path) -> tuple[PluginManager, Path, Path]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    inits = tmp_path / "inits.log"
    path = folder / "versioned.py"
    path.write_text(source(inits, "v1", "1.0.0"))
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False,
                                         hot_reload=True, reload_on_change=True))
    report = asyncio.run(manager.load_plugins())
    assert report.loaded == ["versioned"], report.failed
    return manager, folder, inits


def health(s: Any, manager: PluginManager) -> dict:
    return asyncio.run_coroutine_threadsafe(manager.get_health_status(), s.loop).result(5)


def inits_of(inits: Path) -> list[str]:
    return inits.read_text().split() if inits.exists() else []


def test_edits_reload_and_broken_edits_keep_the_old_version(tmp_path: Path, serve: Any) -> None:
    manager, folder, inits = setup(tmp_path)
    path = folder / "versioned.py"
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        def version() -> str:
            r = client.get("/")
            assert r.status_code == 200
            return ",".join(r.headers.get_list("x-version"))

        assert version() == "v1"
        assert inits_of(inits) == ["v1"]
        watcher = manager._watcher
        assert watcher is not None and watcher.running
        assert health(s, manager)["watcher"]["running"] is True

        # an edit: the new version serves
        write_atomic(path, source(inits, "v2", "2.0.0"))
        delay = wait_for(lambda: version() == "v2", "v2 served")
        log.info("reload latency %.3f s (expected under 1 s)", delay)
        assert inits_of(inits) == ["v1", "v2"]
        assert health(s, manager)["plugins"]["versioned"]["version"] == "2.0.0"

        # a touch, and a write of the same content: nothing reloads
        os.utime(path, (time.time() + 5, time.time() + 5))
        write_atomic(path, path.read_text())
        time.sleep(0.8)
        assert inits_of(inits) == ["v1", "v2"]
        assert version() == "v2"

        # a syntax error: v2 serves on, health names the error
        write_atomic(path, "def broken(:\n")
        wait_for(lambda: "reload_error" in health(s, manager)["plugins"]["versioned"], "syntax error in health")
        err = health(s, manager)["plugins"]["versioned"]["reload_error"]
        assert "syntax error" in err and "versioned.py" in err
        assert health(s, manager)["plugins"]["versioned"]["state"] == "active"
        assert version() == "v2"

        # the next good edit loads and clears the error
        write_atomic(path, source(inits, "v3", "3.0.0"))
        wait_for(lambda: version() == "v3", "v3 served")
        assert "reload_error" not in health(s, manager)["plugins"]["versioned"]

        # an exception in initialize: v3 serves on
        write_atomic(path, source(inits, "v4", "4.0.0", extra="raise RuntimeError('no database')"))
        wait_for(lambda: "reload_error" in health(s, manager)["plugins"]["versioned"], "init error in health")
        assert "no database" in health(s, manager)["plugins"]["versioned"]["reload_error"]
        assert version() == "v3"
        assert health(s, manager)["plugins"]["versioned"]["version"] == "3.0.0"

        # a new plugin file dropped into the folder is loaded
        write_atomic(folder / "second.py", SECOND)
        wait_for(lambda: client.get("/").headers.get("x-second") == "yes", "new plugin served")
        assert version() == "v3"
        assert health(s, manager)["plugins"]["second"]["state"] == "active"

        # a broken new file: reported in health, the rest serve
        write_atomic(folder / "third.py", "import nowhere_to_be_found\n")
        wait_for(lambda: health(s, manager)["watcher"]["errors"], "new broken file in health")
        assert "nowhere_to_be_found" in next(iter(health(s, manager)["watcher"]["errors"].values()))
        assert version() == "v3"

        task = watcher._task
        assert task is not None
        started = time.monotonic()
    assert time.monotonic() - started < 10
    assert task.done() and not watcher.running
    assert manager.status == "closed"


def test_reloads_under_load_fail_no_request(tmp_path: Path, serve: Any) -> None:
    manager, folder, inits = setup(tmp_path)
    path = folder / "versioned.py"
    results: list[tuple[int, tuple[str, ...]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client_loop(url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(5000):  # bounded
                if stop.is_set():
                    return
                try:
                    r = c.get("/")
                except Exception as exc:  # a failed request is a failure of the test
                    with lock:
                        errors.append(exc)
                    continue
                with lock:
                    results.append((r.status_code, tuple(r.headers.get_list("x-version"))))

    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as probe:
        threads = [threading.Thread(target=client_loop, args=(s.url,), daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        try:
            delays = []
            for i in range(10):
                tag = "v2" if i % 2 == 0 else "v1"
                write_atomic(path, source(inits, tag, f"{i + 2}.0.0"))
                delays.append(wait_for(lambda: probe.get("/").headers.get_list("x-version") == [tag],
                                       f"reload {i} to {tag}"))
            log.info("reload latencies under load: %s", ", ".join(f"{d:.3f}" for d in delays))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=20)
        assert health(s, manager)["watcher"]["reloads"] == 10
    assert not errors, errors[:3]
    assert len(results) > 100
    assert all(status == 200 for status, _ in results), {st for st, _ in results}
    assert all(len(v) == 1 and v[0] in ("v1", "v2") for _, v in results), \
        {v for _, v in results if len(v) != 1}
    assert len(inits_of(inits)) == 11


def test_content_hash_ignores_touch_and_sees_package_edits(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "helper.py").write_text("y = 2\n")
    before = content_hash(pkg)
    os.utime(pkg / "helper.py", (time.time() + 5, time.time() + 5))
    assert content_hash(pkg) == before
    (pkg / "helper.py").write_text("y = 3\n")
    assert content_hash(pkg) != before
    assert content_hash(tmp_path / "missing.py") is None


def test_no_watcher_without_reload_on_change(tmp_path: Path) -> None:
    async def main() -> None:
        manager = PluginManager(PluginConfig(hot_reload=True))
        await manager.initialize_all()
        assert manager._watcher is None
        assert "watcher" not in await manager.get_health_status()
        await manager.shutdown_all()

    asyncio.run(main())


PACKAGE_INIT = '''
from covet_pipe import MiddlewarePlugin

from .helper import TAG


class Pkg(MiddlewarePlugin):
    name = "pkg"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.add("x-pkg", TAG)


plugin = Pkg()
'''


def test_an_edit_inside_a_package_reloads_it(tmp_path: Path, serve: Any) -> None:
    folder = tmp_path / "plugins"
    pkg = folder / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PACKAGE_INIT)
    (pkg / "helper.py").write_text("TAG = 'a'\n")
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False,
                                         hot_reload=True, reload_on_change=True))
    assert asyncio.run(manager.load_plugins()).loaded == ["pkg"]
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        assert client.get("/").headers.get_list("x-pkg") == ["a"]
        write_atomic(pkg / "helper.py", "TAG = 'b'\n")
        wait_for(lambda: client.get("/").headers.get_list("x-pkg") == ["b"], "package edit served")
        assert health(s, manager)["watcher"]["reloads"] == 1


CLOCK = """
from covet_pipe import MiddlewarePlugin

class Clock(MiddlewarePlugin):
    name = "clock"
    version = "{version}"

def create_plugin(config):
    return Clock()
"""


async def test_reload_that_breaks_a_dependents_constraint_is_refused_and_the_old_version_serves(tmp_path):
    import pytest

    from covet_pipe import MiddlewarePlugin, PluginConfig, PluginError, PluginManager

    class Needer(MiddlewarePlugin):
        name = "needer"
        version = "1.0.0"
        dependencies = ["clock>=1,<2"]

    path = tmp_path / "clock.py"
    path.write_text(CLOCK.format(version="1.0.0"))
    manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False))
    await manager.load_plugin_from_path(str(path))
    manager.register(Needer())
    await manager.initialize_all()

    path.write_text(CLOCK.format(version="2.0.0"))
    with pytest.raises(PluginError, match=r"reload of 'clock' refused, the old version 1\.0\.0 keeps serving: "
                                          r"the new version 2\.0\.0 does not satisfy needer's 'clock>=1,<2'"):
        await manager.reload_plugin("clock")
    assert manager.get_plugin("clock").version == "1.0.0"
    assert {e.name: e.state for e in manager.get_middleware_chain()} == {"clock": "active", "needer": "active"}

    path.write_text(CLOCK.format(version="1.5.0"))            # within the constraint: reloads
    await manager.reload_plugin("clock")
    assert manager.get_plugin("clock").version == "1.5.0"
    await manager.shutdown_all()


async def test_the_reloaded_version_takes_the_operators_failure_policy_as_the_first_one_did(tmp_path):
    path = tmp_path / "clock.py"
    path.write_text(CLOCK.format(version="1.0.0"))
    manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False, failure_policies={"clock": "open"}))
    await manager.load_plugin_from_path(str(path))
    await manager.initialize_all()
    assert manager.get_plugin("clock").failure_policy == "open"

    path.write_text(CLOCK.format(version="2.0.0"))
    await manager.reload_plugin("clock")
    plugin = manager.get_plugin("clock")
    # the record and the plugin object both: a sandboxed plugin's proxy reads its own failure_policy
    assert (plugin.version, plugin.failure_policy) == ("2.0.0", "open")
    assert [p["failure_policy"] for p in manager.list_plugins()] == ["open"]
    await manager.shutdown_all()


async def test_reloads_and_unloads_drop_the_modules_the_plugin_was_loaded_as(tmp_path):
    import sys

    import pytest

    from covet_pipe import PluginError

    pkg = tmp_path / "tick"
    pkg.mkdir()
    (pkg / "helper.py").write_text("VERSION = '1.0.0'\n")
    (pkg / "__init__.py").write_text(CLOCK.format(version="{VERSION}").replace("\"{VERSION}\"", "helper.VERSION")
                                     .replace('name = "clock"', 'name = "tick"')
                                     .replace("from covet_pipe import MiddlewarePlugin",
                                              "from covet_pipe import MiddlewarePlugin\nfrom . import helper"))
    manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False))
    await manager.load_plugin_from_path(str(pkg))
    await manager.initialize_all()

    def modules() -> list[str]:
        return sorted(m for m in sys.modules if m.startswith("covet_pipe_plugin_tick_"))

    first = modules()
    assert len(first) == 2 and first[1] == first[0] + ".helper"      # the package and its submodule
    (pkg / "helper.py").write_text("VERSION = '2.0.0'\n")
    await manager.reload_plugin("tick")
    second = modules()
    assert manager.get_plugin("tick").version == "2.0.0" and len(second) == 2 and not set(first) & set(second)

    (pkg / "helper.py").write_text("VERSION = 'not a version'\n")     # the new version is refused
    with pytest.raises(PluginError):
        await manager.reload_plugin("tick")
    assert modules() == second

    await manager.unload_plugin("tick")
    assert modules() == []


async def test_a_module_stays_while_a_plugin_loaded_from_it_still_serves(tmp_path):
    import sys

    path = tmp_path / "pair.py"
    path.write_text(PAIR.format(version="1.0.0"))
    manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False))
    assert await manager.load_plugin_from_path(str(path)) == ["first", "second"]
    await manager.initialize_all()
    old_module = type(manager.get_plugin("second")).__module__

    path.write_text(PAIR.format(version="2.0.0"))
    await manager.reload_plugin("first")        # the file's other plugin of the new load is left unused
    new_module = type(manager.get_plugin("first")).__module__
    assert manager.get_plugin("first").version == "2.0.0" and new_module != old_module
    assert new_module in sys.modules        # the new version's module, though its sibling was dropped
    assert old_module in sys.modules        # "second" 1.0.0 still serves from the old one

    await manager.reload_plugin("second")
    assert old_module not in sys.modules and new_module in sys.modules
    await manager.unload_plugin("first")
    await manager.unload_plugin("second")
    assert not [m for m in sys.modules if m.startswith("covet_pipe_plugin_pair_")]


PAIR = """
from covet_pipe import MiddlewarePlugin

class First(MiddlewarePlugin):
    name = "first"
    version = "{version}"

class Second(MiddlewarePlugin):
    name = "second"
    version = "{version}"

def create_plugin(config):
    return [First(), Second()]
"""
