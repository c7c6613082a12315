"""Hot reload beyond edits: state handoff, deleted and renamed files, plugin folders created later.

Each test runs a real uvicorn on 127.0.0.1 with the watcher on and changes real files.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from covet_pipe import PluginConfig, PluginError, PluginManager, wrap
from tests.test_reload import health, slow_app, wait_for, write_atomic

COUNTER = '''
from covet_pipe import MiddlewarePlugin


class Counter(MiddlewarePlugin):
    name = "counter"
    version = "{version}"

    def __init__(self):
        self.count = 0

    def export_state(self):
        return {{"count": self.count, "from": "{version}"}}

    {importer}

    def process_response(self, response, ctx):
        self.count += 1
        response.headers.add("x-count", str(self.count))
        response.headers.add("x-counter-version", "{version}")


def create_plugin(config):
    return Counter()
'''

IMPORTS = '''def import_state(self, state):
        self.count = state["count"]
        self.imported_from = state["from"]'''

TAGGED = '''
from covet_pipe import MiddlewarePlugin


class Tagged(MiddlewarePlugin):
    name = "{name}"
    version = "1.0.0"
    {deps}

    def process_response(self, response, ctx):
        response.headers.add("x-{name}", "{tag}")


def create_plugin(config):
    return Tagged()
'''


def _manager(*folders: Path, **extra: Any) -> PluginManager:
    return PluginManager(PluginConfig(plugin_paths=[str(f) for f in folders], entry_points=False,
                                      hot_reload=True, reload_on_change=True, **extra))


def _counter(version: str, importer: str = IMPORTS) -> str:
    return COUNTER.format(version=version, importer=importer)


def test_state_moves_from_the_old_version_to_the_new(tmp_path: Path, serve: Any, caplog: Any) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    path = folder / "counter.py"
    path.write_text(_counter("1.0.0"))
    manager = _manager(folder)
    assert asyncio.run(manager.load_plugins()).loaded == ["counter"]
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        for i in range(1, 6):
            assert client.get("/").headers["x-count"] == str(i)
        write_atomic(path, _counter("2.0.0"))
        wait_for(lambda: client.get("/").headers["x-counter-version"] == "2.0.0", "v2 served")
        # the count went on from where v1 left it (the probe's requests counted on both sides)
        r = client.get("/")
        assert int(r.headers["x-count"]) > 6
        assert manager.get_plugin("counter").imported_from == "1.0.0"
        # a version whose export is not JSON-safe serves; the reload after it goes on without state
        write_atomic(path, _counter("2.1.0").replace('"from": "2.1.0"', '"from": object()'))
        wait_for(lambda: client.get("/").headers["x-counter-version"] == "2.1.0", "2.1.0 served")
        with caplog.at_level(logging.WARNING, logger="covet_pipe.manager"):
            write_atomic(path, _counter("3.0.0"))
            wait_for(lambda: client.get("/").headers["x-counter-version"] == "3.0.0", "3.0.0 served")
        assert int(client.get("/").headers["x-count"]) < 5       # started afresh
        assert "reload_error" not in health(s, manager)["plugins"]["counter"]
        assert any("export_state() of version 2.1.0 failed" in r.getMessage() and "'counter'" in r.getMessage()
                   for r in caplog.records)


def test_a_failing_import_keeps_the_old_version(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    path = folder / "counter.py"
    path.write_text(_counter("1.0.0"))
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False, hot_reload=True))

    async def go() -> None:
        await manager.load_plugins()
        await manager.initialize_all()
        path.write_text(_counter("2.0.0", importer="def import_state(self, state):\n"
                                                  "        raise KeyError('schema 2 needs a total')"))
        with pytest.raises(PluginError, match=r"import_state\(\) of version 2.0.0 raised KeyError"):
            await manager.reload_plugin("counter")
        assert manager.get_plugin("counter").version == "1.0.0"
        assert manager.list_plugins()[0]["state"] == "active"
        await manager.shutdown_all()
    asyncio.run(go())


def test_deleting_a_file_unloads_its_plugin_unless_others_depend_on_it(tmp_path: Path, serve: Any) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "alpha.py").write_text(TAGGED.format(name="alpha", tag="a", deps=""))
    (folder / "base.py").write_text(TAGGED.format(name="base", tag="b", deps=""))
    (folder / "user.py").write_text(TAGGED.format(name="user", tag="u", deps='dependencies = ["base"]'))
    manager = _manager(folder)
    assert sorted(asyncio.run(manager.load_plugins()).loaded) == ["alpha", "base", "user"]
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        assert client.get("/").headers["x-alpha"] == "a"
        os.remove(folder / "alpha.py")
        wait_for(lambda: "x-alpha" not in client.get("/").headers, "alpha unloaded")
        assert "alpha" not in health(s, manager)["plugins"]

        # base has a dependent: it keeps serving and health says why
        os.remove(folder / "base.py")
        wait_for(lambda: "reload_error" in health(s, manager)["plugins"]["base"], "refusal in health")
        err = health(s, manager)["plugins"]["base"]["reload_error"]
        assert "deleted" in err and "user" in err
        assert client.get("/").headers["x-base"] == "b"

        # a file added again under the old name loads again
        write_atomic(folder / "alpha.py", TAGGED.format(name="alpha", tag="a2", deps=""))
        wait_for(lambda: client.get("/").headers.get("x-alpha") == "a2", "alpha back")


def test_a_renamed_file_reloads_from_its_new_path_without_a_gap(tmp_path: Path, serve: Any) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "guard.py").write_text(TAGGED.format(name="guard", tag="g1", deps=""))
    manager = _manager(folder)
    assert asyncio.run(manager.load_plugins()).loaded == ["guard"]
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        assert client.get("/").headers["x-guard"] == "g1"
        os.replace(folder / "guard.py", folder / "guard_v2.py")
        wait_for(lambda: health(s, manager)["plugins"]["guard"]["path"].endswith("guard_v2.py"),
                 "guard reloaded from guard_v2.py")
        assert client.get("/").headers["x-guard"] == "g1"
        assert health(s, manager)["plugins"]["guard"]["state"] == "active"
        # and it is watched under its new name
        write_atomic(folder / "guard_v2.py", TAGGED.format(name="guard", tag="g2", deps=""))
        wait_for(lambda: client.get("/").headers.get("x-guard") == "g2", "edit of the renamed file")


def test_a_plugin_folder_created_after_start_is_watched(tmp_path: Path, serve: Any) -> None:
    present = tmp_path / "present"
    present.mkdir()
    later = tmp_path / "later"
    manager = _manager(present, later)
    report = asyncio.run(manager.load_plugins())
    assert str(later) in report.failed and "does not exist" in report.failed[str(later)]
    with serve(wrap(slow_app, manager)) as s, httpx.Client(base_url=s.url) as client:
        assert "x-late" not in client.get("/").headers
        later.mkdir()
        # a file written in the same moment as the folder appears is loaded too
        (later / "late.py").write_text(TAGGED.format(name="late", tag="yes", deps=""))
        wait_for(lambda: client.get("/").headers.get("x-late") == "yes", "plugin in the new folder served")
        write_atomic(later / "late.py", TAGGED.format(name="late", tag="edited", deps=""))
        wait_for(lambda: client.get("/").headers.get("x-late") == "edited", "edit in the new folder")
