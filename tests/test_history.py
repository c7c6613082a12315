"""covet_pipe.history: bounded rings of reloads and plugin errors, fed by the manager and the core's reports."""

from __future__ import annotations

import asyncio
import logging

import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.history import (MAX_TEXT, History, record_error, record_reload, recent_errors, reload_counts,
                                reload_history)
from covet_pipe.testing import call


def test_the_rings_keep_the_last_events_newest_first() -> None:
    history = History(maxlen=3)
    for i in range(5):
        record_reload(history, "p", f"{i}.0", f"{i + 1}.0", i % 2 == 0, None if i % 2 == 0 else "no", 0.5)
        record_error(history, "p", "process_request", f"E{i}")
    assert [e["new_version"] for e in reload_history(history)] == ["5.0", "4.0", "3.0"]
    assert [e["error"] for e in recent_errors(history)] == ["E4", "E3", "E2"]
    # the counts count every reload, also those that left the ring
    assert reload_counts(history) == {"p": {"ok": 3, "failed": 2}}


def test_texts_are_printable_and_cut() -> None:
    history = History()
    record_error(history, "p\n", "hook", "line one\nforged line\x1b[31m" + "x" * 2000)
    [event] = recent_errors(history)
    assert event["plugin"] == "p\\n"
    assert event["error"].startswith("line one\\nforged line\\x1b[31m") and event["error"].endswith("...")
    assert len(event["error"]) <= MAX_TEXT + 40      # escapes widen the kept characters a little


class Raises(MiddlewarePlugin):
    name = "raises"
    version = "1.0.0"

    def process_request(self, request, ctx):  # type: ignore[no-untyped-def]
        raise RuntimeError("broken\nby " + request.path)


class Fine(MiddlewarePlugin):
    name = "fine"
    version = "1.0.0"


async def _hello(scope, receive, send):  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hi"})


def test_a_hook_that_raises_is_a_recent_error_of_its_manager_only(caplog: pytest.LogCaptureFixture) -> None:
    mine, other = PluginManager(), PluginManager()
    mine.register(Raises())
    other.register(Fine())
    with caplog.at_level(logging.ERROR, logger="covet_pipe.plugins"):
        result = asyncio.run(call(wrap(_hello, mine), path="/x"))
    # the record still reaches the handlers: the ring copies it, it does not take it
    assert [r.name for r in caplog.records if "raises" in r.getMessage()] == ["covet_pipe.plugins"]
    assert result.status == 500
    [event] = mine.recent_errors()
    assert (event["plugin"], event["hook"]) == ("raises", "process_request")
    assert event["error"] == "RuntimeError: broken\\nby /x"
    assert other.recent_errors() == []


def test_a_reload_through_the_manager_is_recorded_with_its_versions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from covet_pipe import PluginConfig
    source = 'from covet_pipe import MiddlewarePlugin\nclass S(MiddlewarePlugin):\n    name = "s"\n' \
             '    version = "{v}"\nplugin = S()\n'
    path = tmp_path / "s.py"
    path.write_text(source.format(v="1.0"))

    async def main() -> PluginManager:
        manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False))
        await manager.load_plugin_from_path(str(path))
        await manager.initialize_all()
        path.write_text(source.format(v="2.0"))
        await manager.reload_plugin("s")
        path.write_text("broken (\n")
        with pytest.raises(Exception, match="s.py"):
            await manager.reload_plugin("s")
        await manager.shutdown_all()
        return manager

    manager = asyncio.run(main())
    failed, ok = manager.reload_history()
    assert (ok["old_version"], ok["new_version"], ok["ok"], ok["error"]) == ("1.0", "2.0", True, None)
    assert (failed["old_version"], failed["new_version"], failed["ok"]) == ("2.0", None, False)
    assert "PluginLoadError" in failed["error"] and failed["duration_s"] >= 0
    assert manager.reload_counts() == {"s": {"ok": 1, "failed": 1}}


def test_two_reloads_at_once_run_one_after_the_other(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # before, both began from version 1: it was stopped twice and one version 2 was never stopped
    from covet_pipe import PluginConfig
    stops = tmp_path / "stops"
    source = ('import asyncio\nfrom covet_pipe import MiddlewarePlugin\nclass S(MiddlewarePlugin):\n'
              '    name = "s"\n    version = "{v}"\n'
              '    async def initialize(self, ctx):\n        await asyncio.sleep(0.05)\n'
              '    async def shutdown(self):\n'
              f'        with open({str(stops)!r}, "a") as f:\n'
              '            f.write(self.version + " " + str(id(self)) + "\\n")\n'
              'plugin = S()\n')
    path = tmp_path / "s.py"
    path.write_text(source.format(v="1"))

    async def main() -> PluginManager:
        manager = PluginManager(PluginConfig(hot_reload=True, entry_points=False))
        await manager.load_plugin_from_path(str(path))
        await manager.initialize_all()
        path.write_text(source.format(v="2"))
        await asyncio.gather(manager.reload_plugin("s"), manager.reload_plugin("s"))
        await manager.shutdown_all()
        return manager

    manager = asyncio.run(main())
    lines = stops.read_text().split()
    versions, ids = lines[0::2], lines[1::2]
    assert versions == ["1", "2", "2"] and len(set(ids)) == 3      # each version stopped once
    assert [(e["old_version"], e["new_version"]) for e in reversed(manager.reload_history())] == \
        [("1", "2"), ("2", "2")]


class FailsToStart(MiddlewarePlugin):
    name = "fails_to_start"
    version = "1.0.0"

    def initialize(self, ctx):  # type: ignore[no-untyped-def]
        raise OSError("no database at db:5432")


def test_a_plugin_that_fails_to_start_is_a_recent_error() -> None:
    manager = PluginManager()
    manager.register(FailsToStart())
    asyncio.run(manager.initialize_all())
    [event] = manager.recent_errors()
    assert (event["plugin"], event["hook"]) == ("fails_to_start", "initialize")
    assert event["error"] == "OSError: no database at db:5432"


def test_a_reload_the_file_watcher_makes_is_recorded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    from covet_pipe import PluginConfig
    folder = tmp_path / "plugins"
    folder.mkdir()
    source = 'from covet_pipe import MiddlewarePlugin\nclass W(MiddlewarePlugin):\n    name = "w"\n' \
             '    version = "{v}"\nplugin = W()\n'
    (folder / "w.py").write_text(source.format(v="1.0"))

    async def main() -> list[dict[str, object]]:
        manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], hot_reload=True, reload_on_change=True,
                                             entry_points=False))
        await manager.initialize_all()
        try:
            await asyncio.sleep(0.3)            # the watcher takes its baseline
            (folder / "w.py").write_text(source.format(v="2.0"))
            deadline = time.monotonic() + 20
            while not manager.reload_history() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return manager.reload_history()
        finally:
            await manager.shutdown_all()

    [event] = asyncio.run(main())
    assert (event["name"], event["old_version"], event["new_version"], event["ok"]) == ("w", "1.0", "2.0", True)
