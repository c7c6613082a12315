"""Plugin files that fail to load hold their place fail-closed, through a real uvicorn (covet_pipe._standin)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from covet_pipe import (ConfigError, Pipeline, PluginConfig, PluginError, PluginManager, ProtocolPlugin,
                        StrictError)
from covet_pipe.errors import PluginLoadError
from tests._helpers import echo_app, on_server_loop

GUARD = '''
from covet_pipe import MiddlewareAction, MiddlewarePlugin

class Guard(MiddlewarePlugin):
    name = "guard"
    version = "2.0.0"

    def process_request(self, request, ctx):
        if request.headers.get("x-api-key") != "sekret":
            return MiddlewareAction.reject(401, "missing or wrong API key")

plugin = Guard()
'''

#: the guard, whose initialize() raises
FAILS_TO_START = GUARD.replace("plugin = Guard()", "Guard.initialize = lambda self, ctx: 1 / 0\nplugin = Guard()")

BROKEN = {
    "import-error": "import covet_pipe_no_such_module\n",
    "syntax-error": "def broken(:\n",
    "raises": "raise RuntimeError('no config here')\n",
}


def _manager(folder: Path, **options: Any) -> PluginManager:
    return PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False, hot_reload=True,
                                      **options))


async def _resp_call(app: Any) -> int:
    """A request of another protocol ("resp", as covet-pipe's listener sends it); the status."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def app_answers(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = {"type": "resp", "asgi": {"version": "3.0"}, "method": "GET", "path": "k", "raw_path": b"k",
             "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2),
             "scheme": "redis", "root_path": "", "http_version": "1.1"}
    await Pipeline(app_answers, app.manager)(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


@pytest.mark.parametrize("source", list(BROKEN.values()), ids=list(BROKEN))
def test_broken_file_answers_503_then_its_fix_serves_after_reload(serve: Any, tmp_path: Path, source: str) -> None:
    (tmp_path / "guard.py").write_text(source)
    manager = _manager(tmp_path)
    with serve(Pipeline(echo_app, manager)) as s:
        report = on_server_loop(s, manager.load_plugins())
        assert report.loaded == [] and list(report.failed) == [str(tmp_path / "guard.py")]
        closed = httpx.get(s.url + "/private", timeout=10)
        health = on_server_loop(s, manager.get_health_status())
        (tmp_path / "guard.py").write_text(GUARD)
        on_server_loop(s, manager.reload_plugin("guard"))
        without_key = httpx.get(s.url + "/private", timeout=10)
        with_key = httpx.get(s.url + "/private", headers={"x-api-key": "sekret"}, timeout=10)
        after = on_server_loop(s, manager.get_health_status())
    assert closed.status_code == 503 and "Traceback" not in closed.text
    assert health["status"] == "failed"
    entry = health["plugins"]["guard"]
    assert entry["load_failed"] is True and entry["failure_policy"] == "closed"
    assert entry["state"] == "failed" and entry["error"].startswith(f"could not be loaded: {tmp_path / 'guard.py'}")
    assert (without_key.status_code, with_key.status_code) == (401, 200)
    assert after["status"] == "ok" and after["plugins"]["guard"]["version"] == "2.0.0"
    assert "load_failed" not in after["plugins"]["guard"]


class RespProtocol(ProtocolPlugin):
    """Speaks "resp" (as far as the chain knows: the listener is not used here)."""

    name = "resp_protocol"
    version = "1.0.0"
    protocol_name = "resp"


def test_a_stand_in_refuses_every_protocol_when_the_manifest_cannot_be_read(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(GUARD)
    (tmp_path / "guard.covet-plugin.toml").write_text('failure_policy = "open"\nprotocols = [\n')  # not TOML
    manager = _manager(tmp_path)
    manager.register(RespProtocol())
    with serve(Pipeline(echo_app, manager)) as s:
        report = on_server_loop(s, manager.load_plugins())
        assert "is not valid TOML" in report.failed[str(tmp_path / "guard.py")]
        http = httpx.get(s.url + "/", timeout=10)
        resp = on_server_loop(s, _resp_call(Pipeline(echo_app, manager)))
    # the manifest's failure_policy = "open" could not be read: closed, on HTTP and on RESP alike
    assert (http.status_code, resp) == (503, 503)


def test_a_stand_in_refuses_only_the_protocols_its_manifest_lists(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    (tmp_path / "guard.covet-plugin.toml").write_text('protocols = ["resp"]\n')
    manager = _manager(tmp_path)
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugins())
        http = httpx.get(s.url + "/", timeout=10)
        resp = on_server_loop(s, _resp_call(Pipeline(echo_app, manager)))
    assert (http.status_code, resp) == (200, 503)


@pytest.mark.parametrize("how", ["manifest", "operator-by-name", "operator-by-path"])
def test_a_broken_file_marked_open_is_left_out(serve: Any, tmp_path: Path, how: str) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    options: dict[str, Any] = {}
    if how == "manifest":
        (tmp_path / "guard.covet-plugin.toml").write_text('failure_policy = "open"\n')
    elif how == "operator-by-name":
        options["failure_policies"] = {"guard": "open"}
    else:
        options["failure_policies"] = {str(tmp_path / "." / "guard.py"): "open"}
    manager = _manager(tmp_path, **options)
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugins())
        r = httpx.get(s.url + "/", timeout=10)
        health = on_server_loop(s, manager.get_health_status())
    assert r.status_code == 200
    assert health["plugins"]["guard"]["failure_policy"] == "open"


def test_the_operator_closes_a_plugin_that_says_open(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    (tmp_path / "guard.covet-plugin.toml").write_text('failure_policy = "open"\n')
    manager = _manager(tmp_path, failure_policies={"guard": "closed"})
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugins())
        assert httpx.get(s.url + "/", timeout=10).status_code == 503


def test_reload_of_a_file_still_broken_keeps_the_stand_in_with_the_new_reason(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    manager = _manager(tmp_path)
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugins())
        (tmp_path / "guard.py").write_text(BROKEN["syntax-error"])
        with pytest.raises(PluginError, match=r"guard\.py still does not load, so its stand-in 'guard' keeps "
                                              r"answering in its place: .*syntax error at line 1"):
            on_server_loop(s, manager.reload_plugin("guard"))
        r = httpx.get(s.url + "/", timeout=10)
        health = on_server_loop(s, manager.get_health_status())
    assert r.status_code == 503
    assert "syntax error at line 1" in health["plugins"]["guard"]["error"]


def test_a_fixed_file_whose_plugin_then_fails_to_start_stays_closed(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    manager = _manager(tmp_path)
    with serve(Pipeline(echo_app, manager)) as s:
        on_server_loop(s, manager.load_plugins())
        (tmp_path / "guard.py").write_text(FAILS_TO_START)
        on_server_loop(s, manager.reload_plugin("guard"))
        r = httpx.get(s.url + "/", headers={"x-api-key": "sekret"}, timeout=10)
        health = on_server_loop(s, manager.get_health_status())
    assert r.status_code == 503
    assert health["plugins"]["guard"]["error"] == "initialize() raised ZeroDivisionError: division by zero"


async def test_strict_load_refuses_naming_every_failure(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(BROKEN["import-error"])
    (tmp_path / "b.py").write_text(BROKEN["syntax-error"])
    (tmp_path / "good.py").write_text(GUARD)
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path), str(tmp_path / "missing")],
                                         entry_points=False, strict=True))
    with pytest.raises(StrictError, match=r"^PluginConfig\(strict=True\): refusing to start: 3 plugin\(s\) "
                                          r"failed") as info:
        await manager.load_plugins()
    text = str(info.value)
    assert "No module named 'covet_pipe_no_such_module'" in text
    assert "b.py: syntax error at line 1" in text
    assert f"plugin path {tmp_path / 'missing'} does not exist" in text
    assert set(info.value.failures) == {str(tmp_path / "a.py"), str(tmp_path / "b.py"), str(tmp_path / "missing")}
    assert manager.list_plugins() == []     # nothing half-loaded


async def test_strict_start_refuses_when_a_plugin_fails_to_start(tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(FAILS_TO_START)
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], entry_points=False, strict=True))
    await manager.load_plugins()
    with pytest.raises(StrictError, match=r"refusing to serve: 1 plugin\(s\) failed.*\n  guard \(.*guard\.py\): "
                                          r"initialize\(\) raised ZeroDivisionError"):
        await manager.initialize_all()
    assert manager.status == "new"


async def test_one_folder_given_twice_loads_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "guard.py").write_text(GUARD)
    monkeypatch.chdir(tmp_path)
    manager = PluginManager(PluginConfig(plugin_paths=["./plugins"], entry_points=False))
    assert (await manager.load_plugins()).loaded == ["guard"]
    manager.config.plugin_paths.append(str(tmp_path / "plugins"))     # as covet-pipe serve --plugins adds it
    second = await manager.load_plugins()
    assert (second.loaded, second.failed) == (["guard"], {})    # loaded already, once
    assert [p["name"] for p in manager.list_plugins()] == ["guard"]


async def test_loading_one_file_twice_says_so(tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(GUARD)
    manager = PluginManager()
    await manager.load_plugin_from_path(str(tmp_path / "guard.py"))
    with pytest.raises(PluginError, match=r"^plugin 'guard' from .*guard\.py is already loaded from that same "
                                          r"file; a file loads once: drop the second load, or call "
                                          r"reload_plugin\('guard'\)"):
        await manager.load_plugin_from_path(str(tmp_path / "guard.py"))


async def test_a_name_taken_by_another_file_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(GUARD)
    (tmp_path / "two.py").write_text(GUARD)
    manager = PluginManager()
    await manager.load_plugin_from_path(str(tmp_path / "one.py"))
    with pytest.raises(PluginError, match=rf"^a plugin named 'guard' is already registered \({tmp_path}/one\.py\); "
                                          rf"plugin names are unique: rename the plugin of {tmp_path}/two\.py"):
        await manager.load_plugin_from_path(str(tmp_path / "two.py"))


def test_log_plugins_says_what_loaded_and_what_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    (tmp_path / "good.py").write_text(GUARD)
    (tmp_path / "bad\x1b[2J.py").write_text(BROKEN["import-error"])
    manager = _manager(tmp_path)

    async def run() -> None:
        await manager.load_plugins()
        await manager.initialize_all()
        caplog.clear()
        manager.log_plugins()
        await manager.shutdown_all()

    with caplog.at_level(logging.INFO, logger="covet_pipe.manager"):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if r.name == "covet_pipe.manager"]
    assert f"plugin guard 2.0.0: active, kind middleware (python), priority 1000, sandboxed no, path " \
           f"{tmp_path / 'good.py'}" in lines
    failed = [line for line in lines if line.startswith("plugin bad_2J failed, 503 in its place on every "
                                                        "protocol: could not be loaded: ")]
    assert len(failed) == 1 and "\x1b" not in "".join(lines) and "\\x1b[2J.py" in failed[0]


def test_cpu_limit_above_the_machine_is_refused() -> None:
    import os
    cpus = len(os.sched_getaffinity(0))
    with pytest.raises(ConfigError, match=rf"^cpu_limit: 64 CPUs is more than this machine gives covet-pipe "
                                          rf"\({cpus}\), so it would limit nothing"):
        PluginConfig(cpu_limit=64)
    with pytest.raises(ConfigError, match=r"^cpu_limit: expected a share of CPU above 0"):
        PluginConfig(cpu_limit=0)
    assert PluginConfig(cpu_limit=cpus).cpu_limit == cpus


def test_cpu_limit_above_the_machine_in_a_manifest_is_refused(tmp_path: Path) -> None:
    from covet_pipe.discovery import read_manifest
    (tmp_path / "p.py").write_text(GUARD)
    (tmp_path / "p.covet-plugin.toml").write_text("[permissions]\ncpu_limit = 5000\n")
    with pytest.raises(PluginLoadError, match=r"p\.covet-plugin\.toml: permissions\.cpu_limit: 5000 CPUs is more "
                                              r"than this machine"):
        read_manifest(tmp_path / "p.py")


def test_failure_policies_must_be_open_or_closed() -> None:
    with pytest.raises(ConfigError, match=r"^failure_policies\['audit'\]: expected 'open' .* got 'skip'"):
        PluginConfig(failure_policies={"audit": "skip"})


async def test_load_plugin_from_path_of_a_fixed_file_replaces_its_stand_in(tmp_path: Path) -> None:
    from covet_pipe.testing import call
    (tmp_path / "guard.py").write_text(BROKEN["syntax-error"])
    manager = _manager(tmp_path)
    await manager.load_plugins()
    await manager.initialize_all()
    assert (await call(Pipeline(echo_app, manager), "GET", "/")).status == 503
    (tmp_path / "guard.py").write_text(GUARD)
    assert await manager.load_plugin_from_path(str(tmp_path / "guard.py")) == ["guard"]
    served = await call(Pipeline(echo_app, manager), "GET", "/", headers=[("x-api-key", "sekret")])
    assert served.status == 200
    assert [p["name"] for p in manager.list_plugins()] == ["guard"]
    await manager.shutdown_all()


def test_a_sandboxed_guard_whose_helper_cannot_start_it_holds_its_place(serve: Any, tmp_path: Path) -> None:
    (tmp_path / "guard.py").write_text(BROKEN["import-error"])
    (tmp_path / "guard.covet-plugin.toml").write_text("sandbox = true\n")
    manager = _manager(tmp_path)
    with serve(Pipeline(echo_app, manager)) as s:
        report = on_server_loop(s, manager.load_plugins())
        closed = httpx.get(s.url + "/", headers={"x-api-key": "sekret"}, timeout=10)
        (tmp_path / "guard.py").write_text(GUARD)
        on_server_loop(s, manager.reload_plugin("guard"))
        served = httpx.get(s.url + "/", headers={"x-api-key": "sekret"}, timeout=10)
        refused = httpx.get(s.url + "/", timeout=10)
        kinds = [(p["name"], p["source"]) for p in manager.list_plugins()]
        on_server_loop(s, manager.shutdown_all())
    assert "the sandboxed helper could not start the plugin" in report.failed[str(tmp_path / "guard.py")]
    assert closed.status_code == 503
    assert (served.status_code, refused.status_code) == (200, 401)
    assert kinds == [("guard", "sandbox")]      # the fixed file runs sandboxed, as its manifest says
