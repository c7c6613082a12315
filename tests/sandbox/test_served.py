"""Sandboxed plugins served by a real uvicorn: what they may do, and the host surviving what they must not.

Each test starts a PluginManager with a trusted in-process plugin (``Outer``, priority 5, so it runs first
and its response hook runs for every request, 503s included) and loads plugins from ``plugins/`` with
``load_plugin_from_path(..., sandbox=True)`` on the server's event loop, where their helpers live. The
hostile plugin attacks when a request's path asks it to; after each attack the next request must be
served, and the failure must show in ``get_health_status()``. Every process signalled or inspected is a
helper this test's manager started.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from covet_pipe import PluginConfig, PluginManager
from covet_pipe.errors import PluginLoadError
from covet_pipe.sandbox import cgroups
from covet_pipe.sandbox.proxy import SandboxedPluginError
from tests.sandbox._site import PLUGINS, assert_unavailable, gone, my_helpers, proc_status
from tests.sandbox._site import no_helper_outlives_its_test, site  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

# -- a well-behaved sandboxed plugin ---------------------------------------------------------------------------

def test_benign_plugin_edits_rejects_and_keeps_state(site: Any) -> None:
    with site(PluginConfig(plugin_settings={"benign": {"greeting": "hi"}})) as s:
        assert s.load("benign.py") == "benign"
        r = s.get("/hello")
        assert r.status_code == 200
        assert r.json() == {"path": "/hello", "seen": "sandboxed"}      # the app saw the sandbox's edit
        assert r.headers["x-sandbox-state"] == "hi-/hello"              # ctx.state from request to response hook
        assert "x-drop-me" not in r.headers                             # a response header removed in the helper
        assert r.headers["x-outer"]                                     # the in-process plugin ran too
        pid = s.pids("benign")[0]
        assert r.headers["x-sandbox-pid"] == str(pid)
        assert pid != os.getpid()

        denied = s.get("/deny")
        assert denied.status_code == 403
        assert denied.json() == {"error": "denied in the sandbox"}
        assert denied.headers["x-sandbox-state"] == "lost"              # its response hook saw its own answer
        assert denied.headers["x-outer"]

        # Many requests on one channel at once, each with its own state.
        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.served.url, timeout=20) as c:
                return await asyncio.gather(*(c.get(f"/p{i}") for i in range(50)))
        for i, r in enumerate(asyncio.run(burst())):
            assert r.status_code == 200 and r.headers["x-sandbox-state"] == f"hi-/p{i}"
        assert s.outer.requests == s.outer.responses == 52


def test_health_reports_layers_policy_and_the_helper_is_confined(site: Any) -> None:
    with site(PluginConfig(allowed_files=[str(PLUGINS)], memory_limit="512MiB")) as s:
        s.load("benign.py")
        health = s.health("benign")
        assert health["state"] == "active"
        sb = health["sandbox"]
        assert sb["state"] == "serving" and sb["quarantined"] is None and sb["restarts"] == 0
        layers = sb["layers"]
        for layer in ("rlimits", "no_new_privs", "landlock", "seccomp", "caps_dropped"):
            assert layers[layer], (layer, layers)
        assert layers["missing"] == {}
        policy = sb["policy"]
        assert str(PLUGINS) in policy["read_paths"] and policy["memory_limit"] == 512 << 20
        assert set(policy["require"]) >= {"seccomp", "landlock", "no_new_privs", "rlimits"}
        assert sb["call_timeout"] == 5.0 and sb["pool_size"] == 1 and sb["last_failure"] is None
        [helper] = sb["helpers"]
        if not cgroups.missing_controllers():
            assert layers["cgroup"]["controllers"] == ["cpu", "memory", "pids"]
            with open(f"/proc/{helper['pid']}/cgroup") as f:
                assert f"covet-pipe/{os.getpid()}-{helper['pid']}-0" in f.read()
        # From outside: the kernel's view of the helper process.
        status = proc_status(helper["pid"])
        assert status["Seccomp"] == "2"
        assert status["NoNewPrivs"] == "1"
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0000000000000000"
        assert os.readlink(f"/proc/{helper['pid']}/ns/net") != os.readlink("/proc/self/ns/net")
        assert s.get("/").status_code == 200


# -- hostile at request time: each attack answered by 503 and followed by a served request -------------------

@pytest.mark.parametrize("path, reason", [
    ("/segv", "SIGSEGV"),
    ("/exit", "exited with status 1"),
    ("/closefd", "closed the channel"),
    ("/garbage", "malformed frame"),
    ("/hugelen", "over the cap"),
    ("/crlf", "invalid header"),
])
def test_crash_or_protocol_break_is_503_then_restart(site: Any, path: str, reason: str) -> None:
    with site() as s:
        s.load("hostile.py")
        assert s.get("/").json()["seen"] == "hostile-passed"
        [old] = s.pids("hostile")
        t0 = time.monotonic()
        assert_unavailable(s.get(path))
        assert time.monotonic() - t0 < 3.0, "the failure must not wait for the 5 s call deadline"
        assert gone(old), f"helper {old} still runs after {path}"
        new = s.wait_restarted("hostile", [old])
        r = s.get("/after")
        assert r.status_code == 200 and r.json() == {"path": "/after", "seen": "hostile-passed"}
        assert r.headers["x-hostile-pid"] == str(new[0])
        sb = s.sandbox("hostile")
        assert sb["restarts"] == 1 and sb["recent_crashes"] == 1 and sb["quarantined"] is None
        assert reason in sb["last_failure"], sb["last_failure"]
        assert s.health("hostile")["state"] == "active"


def test_slow_hook_hits_the_deadline_and_the_helper_is_killed(site: Any) -> None:
    with site(PluginConfig(sandbox_call_timeout=0.5)) as s:
        s.load("hostile.py")
        [old] = s.pids("hostile")
        t0 = time.monotonic()
        assert_unavailable(s.get("/sleep", headers={"x-sleep": "20"}))
        elapsed = time.monotonic() - t0
        assert 0.45 <= elapsed < 2.0, elapsed
        assert gone(old)
        s.wait_restarted("hostile", [old])
        assert s.get("/").status_code == 200
        # A hook within its deadline is fine.
        assert s.get("/sleep", headers={"x-sleep": "0.1"}).status_code == 200
        assert "deadline of 0.5 s" in s.sandbox("hostile")["last_failure"]


@pytest.mark.parametrize("path", ["/exec", "/ptrace"])
def test_kill_rule_violation_quarantines(site: Any, path: str) -> None:
    with site() as s:
        s.load("hostile.py")
        [old] = s.pids("hostile")
        assert_unavailable(s.get(path))
        assert gone(old)
        sb = s.wait("quarantine", lambda: (lambda b: b if b["state"] == "quarantined" else None)(s.sandbox("hostile")))
        assert "SIGSYS" in sb["quarantined"] and "kill rule" in sb["quarantined"]
        assert sb["helpers"] == [] and sb["restarts"] == 0
        time.sleep(0.5)                                   # no restart comes
        for _ in range(3):
            assert_unavailable(s.get("/"))
        assert s.sandbox("hostile")["helpers"] == []
        assert s.run(s.manager.get_health_status())["status"] in ("ok", "degraded")


def test_quarantine_ends_the_whole_pool(site: Any) -> None:
    with site(PluginConfig(sandbox_pool_size=2)) as s:
        s.load("hostile.py")
        pids = s.pids("hostile")
        assert len(pids) == 2
        assert_unavailable(s.get("/exec"))
        sb = s.wait("quarantine", lambda: (lambda b: b if b["state"] == "quarantined" else None)(s.sandbox("hostile")))
        assert all(gone(pid) for pid in pids)           # the sibling of the violator is ended too
        assert s.sandbox("hostile")["helpers"] == [] and "SIGSYS" in sb["quarantined"]
        assert "SIGSYS" in sb["last_failure"]
        assert_unavailable(s.get("/"))


def test_crash_budget_quarantines_after_three_crashes(site: Any) -> None:
    with site() as s:
        s.load("hostile.py")
        crashed: list[int] = []
        for n in range(3):
            [pid] = s.wait("a live helper", lambda: s.pids("hostile"))
            assert_unavailable(s.get("/exit"))
            crashed.append(pid)
            assert gone(pid)
            if n < 2:
                s.wait_restarted("hostile", crashed)
        sb = s.wait("quarantine", lambda: (lambda b: b if b["state"] == "quarantined" else None)(s.sandbox("hostile")))
        assert sb["quarantined"].startswith("3 crashes within 300 s"), sb["quarantined"]
        assert sb["restarts"] == 2 and sb["recent_crashes"] == 3
        time.sleep(0.5)
        assert_unavailable(s.get("/"))
        assert sb["helpers"] == [] and s.sandbox("hostile")["helpers"] == []


def test_quarantine_ends_with_unload_and_load(site: Any) -> None:
    with site() as s:
        s.load("hostile.py")
        s.get("/exec")
        s.wait("quarantine", lambda: s.sandbox("hostile")["state"] == "quarantined")
        assert s.run(s.manager.unload_plugin("hostile")) == ["hostile"]
        s.load("hostile.py")
        assert s.get("/").json()["seen"] == "hostile-passed"
        assert s.sandbox("hostile")["state"] == "serving"


def test_quarantine_ends_with_reload_and_the_new_version_stays_sandboxed(site: Any) -> None:
    with site(PluginConfig(hot_reload=True)) as s:
        s.load("hostile.py")
        [old] = s.pids("hostile")
        s.get("/ptrace")
        s.wait("quarantine", lambda: s.sandbox("hostile")["state"] == "quarantined")
        assert_unavailable(s.get("/"))
        s.run(s.manager.reload_plugin("hostile"))
        plugin = s.manager.get_plugin("hostile")
        assert "sandboxed" in s.manager.list_plugins()[1]["kinds"] and plugin._sup is not None
        sb = s.sandbox("hostile")
        assert sb["state"] == "serving" and sb["quarantined"] is None
        [new] = sb["helpers"]
        assert new["pid"] != old and proc_status(new["pid"])["Seccomp"] == "2"
        r = s.get("/")
        assert r.json()["seen"] == "hostile-passed" and r.headers["x-hostile-pid"] == str(new["pid"])
        assert "hostile" not in {m.split(".")[0] for m in sys.modules}      # never imported in the host


def test_in_flight_calls_of_a_dead_helper_resolve_at_once(site: Any) -> None:
    # The helper dies 0.4 s into the first of 6 calls in flight (each would take 3 s, the deadline is 10 s):
    # every request must get its 503 when it dies, not at its deadline.
    with site(PluginConfig(sandbox_call_timeout=10)) as s:
        s.load("hostile.py")
        [old] = s.pids("hostile")

        async def many() -> tuple[list[httpx.Response], list[float]]:
            async with httpx.AsyncClient(base_url=s.served.url, timeout=30) as c:
                t0 = time.monotonic()
                done: list[float] = []

                async def one() -> httpx.Response:
                    r = await c.get("/slow-then-die", headers={"x-die-after": "0.4"})
                    done.append(time.monotonic() - t0)
                    return r
                return list(await asyncio.gather(*(one() for _ in range(6)))), done

        responses, times = asyncio.run(many())
        for r in responses:
            assert_unavailable(r)
        assert max(times) < 2.7, times                 # not 3 s (the hook), not 10 s (the deadline)
        assert gone(old)
        # the calls fail as the channel closes; the supervisor records why once it has reaped the helper
        failure = s.wait("the failure recorded", lambda: s.sandbox("hostile")["last_failure"])
        assert "exited with status 7" in failure
        s.wait_restarted("hostile", [old])
        assert s.get("/").status_code == 200


def test_fail_open_plugin_is_skipped_when_it_crashes(site: Any) -> None:
    with site(PluginConfig(plugin_settings={"hostile": {"failure_policy": "open"}})) as s:
        s.load("hostile.py")
        assert s.health("hostile")["state"] == "active"
        [old] = s.pids("hostile")
        r = s.get("/exit")
        assert r.status_code == 200 and r.json() == {"path": "/exit", "seen": ""}   # served without it
        assert r.headers["x-outer"]
        s.wait_restarted("hostile", [old])
        assert s.get("/").json()["seen"] == "hostile-passed"


def test_cancelled_call_does_not_break_the_channel(site: Any) -> None:
    # A caller that gives up (a client gone, an outer timeout) leaves a reply in flight; when it arrives
    # later it is dropped, not taken for a protocol violation that would kill the helper.
    with site() as s:
        s.load("hostile.py")
        sup = s.manager.get_plugin("hostile")._sup
        [pid] = s.pids("hostile")
        req = {"type": "http", "method": "GET", "path": "/sleep", "query": b"", "client": None,
               "headers": [(b"x-sleep", b"0.3")], "scheme": "http", "protocol": "http"}

        async def give_up() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sup.call("request", req=req, keep=False), 0.05)
            await asyncio.sleep(0.5)            # the late reply arrives meanwhile

        s.run(give_up())
        assert s.get("/").status_code == 200
        sb = s.sandbox("hostile")
        assert s.pids("hostile") == [pid] and sb["restarts"] == 0 and sb["last_failure"] is None


# -- lifecycle, pool, refusals, auth -------------------------------------------------------------------------

def test_graceful_shutdown_runs_shutdown_in_the_helper(site: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    config = PluginConfig(writable_files=[str(out)], plugin_settings={"benign": {"out": str(out)}})
    with site(config) as s:
        s.load("benign.py")
        [pid] = s.pids("benign")
        for _ in range(3):
            assert s.get("/").status_code == 200
        manager = s.manager
    # Leaving the server ran lifespan shutdown: shutdown_all() on the server's loop.
    assert (out / "shutdown.txt").read_text() == f"shut down by {pid} after 3 calls"
    assert gone(pid)
    assert manager.list_plugins()[0]["state"] == "stopped"
    assert pid not in my_helpers()


def test_pool_of_two_helpers_shares_the_load(site: Any) -> None:
    with site(PluginConfig(sandbox_pool_size=2)) as s:
        s.load("hostile.py")
        pids = s.pids("hostile")
        assert len(pids) == 2 and len(set(pids)) == 2
        for pid in pids:
            assert proc_status(pid)["Seccomp"] == "2"

        async def concurrent(n: int, sleep: str) -> tuple[list[httpx.Response], float]:
            async with httpx.AsyncClient(base_url=s.served.url, timeout=30) as c:
                t0 = time.monotonic()
                rs = await asyncio.gather(*(c.get("/sleep", headers={"x-sleep": sleep}) for _ in range(n)))
                return list(rs), time.monotonic() - t0

        rs, elapsed = asyncio.run(concurrent(4, "0.4"))
        assert all(r.status_code == 200 for r in rs), [r.status_code for r in rs]
        assert {int(r.headers["x-hostile-pid"]) for r in rs} == set(pids)
        # One helper runs hooks one at a time: 4 × 0.4 s would take 1.6 s; two helpers about 0.8 s.
        assert elapsed < 1.4, elapsed
        rs, _ = asyncio.run(concurrent(40, "0"))
        assert {int(r.headers["x-hostile-pid"]) for r in rs} == set(pids)
        # One member crashing leaves the other serving; the pool is refilled.
        assert_unavailable(s.get("/exit"))
        survivors = s.wait("the other helper to serve alone", lambda: len(s.pids("hostile")) == 1 and s.pids("hostile"))
        assert set(survivors) < set(pids)
        assert s.get("/").status_code == 200
        s.wait("the pool to refill", lambda: len(s.pids("hostile")) == 2)


@pytest.mark.parametrize("name, message", [
    ("callnext.py", "uses the call_next style, which cannot run sandboxed"),
    ("protocol.py", "protocol plugins cannot run sandboxed"),
])
def test_unsandboxable_kinds_are_refused(name: str, message: str) -> None:
    before = my_helpers()

    async def load() -> None:
        manager = PluginManager()
        with pytest.raises(PluginLoadError, match=message):
            await manager.load_plugin_from_path(str(PLUGINS / name), sandbox=True)
        assert manager.list_plugins() == []

    asyncio.run(load())
    assert my_helpers() <= before           # the helper that reported the kind was ended


def test_plugin_that_fails_to_import_is_a_load_error_with_nothing_left_behind(caplog: Any) -> None:
    async def load() -> None:
        manager = PluginManager()
        with pytest.raises(PluginLoadError, match="could not start the plugin: .*importing it raised ImportError: "
                                                  "this plugin needs a package that is not installed: geoip2"):
            await manager.load_plugin_from_path(str(PLUGINS / "broken_import.py"), sandbox=True)
        assert manager.list_plugins() == []

    asyncio.run(load())
    assert "broken_import.py" in caplog.text        # its traceback was relayed to the log


@pytest.mark.parametrize("config, message", [
    (dict(allowed_networks=["127.0.0.1:6379"], sandbox_require=["netns", "seccomp"]),
     "'netns' cannot be in force when allowed_networks grants TCP"),
    (dict(sandbox_require=["seccomp", "selinux"]), r"unknown layer\(s\) 'selinux'"),
])
def test_policy_requiring_what_the_config_cannot_give_is_a_load_error(config: dict, message: str) -> None:
    async def load() -> None:
        manager = PluginManager(PluginConfig(**config))
        with pytest.raises(PluginLoadError, match=message) as info:
            await manager.load_plugin_from_path(str(PLUGINS / "benign.py"), sandbox=True)
        assert str(PLUGINS / "benign.py") in str(info.value)
        assert manager.list_plugins() == []

    asyncio.run(load())


def test_required_layers_are_enforced_by_name() -> None:
    # Every layer name that `require` accepts is one the helper (or the host, for cgroup) checks.
    async def load() -> dict[str, Any]:
        manager = PluginManager(PluginConfig(sandbox_require=[
            "rlimits", "netns", "no_new_privs", "landlock", "caps_dropped", "seccomp"]))
        await manager.load_plugin_from_path(str(PLUGINS / "benign.py"), sandbox=True)
        try:
            return (await manager.get_health_status())["plugins"]["benign"]["sandbox"]
        finally:
            await manager.shutdown_all()

    before = my_helpers()
    sb = asyncio.run(load())
    assert my_helpers() <= before         # shutdown_all ended the helper of a plugin that was never started
    assert set(sb["policy"]["require"]) == {"rlimits", "netns", "no_new_privs", "landlock", "caps_dropped",
                                            "seccomp"}
    assert sb["layers"]["caps_dropped"] and sb["layers"]["netns"]


def test_plugin_whose_initialize_fails_is_failed_and_its_helper_ended(site: Any) -> None:
    with site() as s:
        s.load("badinit.py")
        health = s.health("badinit")
        assert health["state"] == "failed"
        assert "RuntimeError: cannot start without setting 'dsn'" in health["error"]
        assert health["sandbox"]["helpers"] == []
        assert my_helpers() == set()
        assert_unavailable(s.get("/"))            # fail closed: a guard that could not start answers 503
        assert s.run(s.manager.unload_plugin("badinit")) == ["badinit"]
        assert s.get("/").status_code == 200


def test_sandboxed_auth_provider() -> None:
    async def use() -> None:
        manager = PluginManager()
        assert await manager.load_plugin_from_path(str(PLUGINS / "auth.py"), sandbox=True) == ["token_auth"]
        await manager.initialize_all()
        try:
            auth = manager.get_auth_provider("token_auth")
            alice = await auth.authenticate({"token": "tok-alice"})
            assert alice == {"user": "alice", "roles": ["admin"]}
            assert await auth.authenticate({"token": "nope"}) is None
            assert await auth.authorize(alice, "/admin", "write") is True
            bob = await auth.authenticate({"token": "tok-bob"})
            assert await auth.authorize(bob, "/admin", "write") is False
            assert await auth.authorize(bob, "/public", "read") is True
            with pytest.raises(SandboxedPluginError, match="ValueError: authorize\\(\\) failed on purpose"):
                await auth.authorize(bob, "/x", "explode")
            health = (await manager.get_health_status())["plugins"]["token_auth"]
            assert health["sandbox"]["state"] == "serving"
            assert "auth" in manager.list_plugins()[0]["kinds"]
            [pid] = [h["pid"] for h in health["sandbox"]["helpers"]]
            assert proc_status(pid)["Seccomp"] == "2"
        finally:
            await manager.shutdown_all()
        assert gone(pid)

    asyncio.run(use())


SANDBOXED_VERSIONED = '''
from covet_pipe import MiddlewarePlugin


class Versioned(MiddlewarePlugin):
    name = "versioned"
    version = "{version}"

    def process_response(self, response, ctx):
        response.headers.add("x-version", "{tag}")


def create_plugin(config):
    return Versioned()
'''


def test_watcher_reloads_an_edited_sandboxed_plugin_in_a_new_helper(site: Any, tmp_path: Path) -> None:
    folder = tmp_path / "watched"
    folder.mkdir()
    path = folder / "versioned.py"
    (folder / "versioned.covet-plugin.toml").write_text("sandbox = true\n")
    path.write_text(SANDBOXED_VERSIONED.format(version="1.0.0", tag="v1"))
    config = PluginConfig(plugin_paths=[str(folder)], entry_points=False, hot_reload=True, reload_on_change=True)
    with site(config) as s:
        # nobody called load_plugins(): lifespan startup loaded plugin_paths
        assert [p["name"] for p in s.manager.list_plugins()] == ["outer", "versioned"]
        [old] = s.pids("versioned")
        assert s.get("/").headers.get_list("x-version") == ["v1"]
        tmp = folder / ".versioned.py.tmp"
        tmp.write_text(SANDBOXED_VERSIONED.format(version="2.0.0", tag="v2"))
        os.replace(tmp, path)
        s.wait("v2 served", lambda: s.get("/").headers.get_list("x-version") == ["v2"], timeout=10)
        [new] = s.pids("versioned")
        assert new != old and s.health("versioned")["version"] == "2.0.0"
        assert s.wait("old helper gone", lambda: gone(old, 0.1), timeout=10)
        assert "versioned" not in {m.split(".")[0] for m in sys.modules}      # never imported in the host
