"""Registry and lifecycle: versions, dependency order, cycles, missing plugins, failures, services."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from covet_pipe import (
    MiddlewarePlugin,
    Plugin,
    PluginConfig,
    PluginManager,
    ServiceNotFoundError,
    wrap,
)
from tests._helpers import asgi_call
from tests.conftest import text_app


class Node(MiddlewarePlugin):
    """A plugin with dependencies that logs start, stop and the states it saw its dependencies in."""

    def __init__(self, name: str, log: list, *, version: str = "1.0.0", deps=(), priority: int = 1000,
                 fail: bool = False, policy: str = "closed") -> None:
        self.name = name
        self.failure_policy = policy
        self.version = version
        self.dependencies = list(deps)
        self.priority = priority
        self.log = log
        self.fail = fail
        #: set by a test that wants the states of the dependencies seen from initialize()
        self.manager: PluginManager | None = None
        self.saw: dict = {}

    async def initialize(self, ctx):
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        if self.manager is not None:
            states = {p["name"]: p["state"] for p in self.manager.list_plugins()}
            self.saw = {d: states[d] for d in (re.split(r"[<>=!~ ]", dep)[0] for dep in self.dependencies)}
        self.log.append(f"init {self.name}")

    async def shutdown(self):
        self.log.append(f"stop {self.name}")

    def process_response(self, response, ctx):
        response.headers.add("x-node", self.name)


async def start(*plugins, config: PluginConfig | None = None) -> PluginManager:
    manager = PluginManager(config)
    for p in plugins:
        manager.register(p)
    await manager.initialize_all()
    return manager


async def health(manager: PluginManager, name: str) -> dict:
    return (await manager.get_health_status())["plugins"][name]


# -- versions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("constraint", ["clock>=1.0,<2", "clock==1.5.*", "clock~=1.4", "clock"])
async def test_dependency_constraint_satisfied_starts_both(constraint):
    log: list = []
    manager = await start(Node("clock", log, version="1.5.2"), Node("app", log, deps=[constraint]))
    assert {p["name"]: p["state"] for p in manager.list_plugins()} == {"clock": "active", "app": "active"}


@pytest.mark.parametrize("constraint, have", [("clock>=1.0,<2", "2.1.0"), ("clock>=3", "2.1.0"),
                                              ("clock==1.5.*", "1.6.0")])
async def test_dependency_constraint_unsatisfied_fails_the_dependent_naming_both_versions(constraint, have):
    log: list = []
    manager = await start(Node("clock", log, version=have), Node("app", log, deps=[constraint]))
    app = await health(manager, "app")
    assert app["state"] == "failed"
    spec = constraint.removeprefix("clock")
    assert re.search(rf"plugin 'app' needs 'clock.*', but clock {re.escape(have)} is registered",
                     app["error"])
    for part in spec.split(","):
        assert part in app["error"]
    assert "relax the constraint in app's dependencies" in app["error"]
    assert (await health(manager, "clock"))["state"] == "active"
    assert log == ["init clock"]


async def test_prerelease_dependency_satisfies_a_plain_constraint():
    manager = await start(Node("clock", [], version="2.0.0rc1"), Node("app", [], deps=["clock>=1"]))
    assert (await health(manager, "app"))["state"] == "active"


# -- dependency order ----------------------------------------------------------------------------

async def test_initialize_runs_in_dependency_order_and_shutdown_in_reverse():
    log: list = []
    # priorities against the dependency order, so priority alone would get it wrong
    base = Node("base", log, priority=300)
    mid = Node("mid", log, deps=["base>=1"], priority=200)
    top = Node("top", log, deps=["mid", "base"], priority=100)
    loner = Node("loner", log, priority=150)
    manager = await start(top, loner, mid, base)
    assert log == ["init loner", "init base", "init mid", "init top"]
    assert [e.name for e in manager.get_middleware_chain()] == ["top", "loner", "mid", "base"]
    await manager.shutdown_all()
    assert log[4:] == ["stop top", "stop mid", "stop base", "stop loner"]


async def test_dependency_is_initialized_not_yet_active_while_its_dependents_start():
    log: list = []
    base = Node("base", log)
    top = Node("top", log, deps=["base"])
    manager = PluginManager()
    manager.register(top)
    manager.register(base)
    top.manager = manager
    await manager.initialize_all()
    assert top.saw == {"base": "initialized"}
    assert {p["name"]: p["state"] for p in manager.list_plugins()} == {"base": "active", "top": "active"}


# -- cycles --------------------------------------------------------------------------------------

async def test_dependency_cycle_is_refused_and_the_message_names_the_cycle():
    log: list = []
    manager = await start(Node("a", log, deps=["b"]), Node("b", log, deps=["c"]), Node("c", log, deps=["a"]),
                          Node("free", log))
    for name in ("a", "b", "c"):
        p = await health(manager, name)
        assert p["state"] == "failed"
        assert p["error"].startswith("dependency cycle: a -> b -> c -> a;")
        assert "allow_circular_dependencies=True" in p["error"]
    assert log == ["init free"]
    # fail closed: the members stay in the chain as stand-ins that answer 503
    assert [(e.name, e.state) for e in manager.get_middleware_chain()] == [
        ("a", "failed"), ("b", "failed"), ("c", "failed"), ("free", "active")]


async def test_self_dependency_is_refused_at_registration():
    from covet_pipe import PluginValidationError
    with pytest.raises(PluginValidationError, match="plugin 'narcissus' depends on itself"):
        PluginManager().register(Node("narcissus", [], deps=["narcissus>=1"]))


async def test_allow_circular_dependencies_starts_the_cycle_with_a_warning_naming_it(caplog):
    log: list = []
    with caplog.at_level(logging.WARNING, logger="covet_pipe.registry"):
        manager = await start(Node("b", log, deps=["a"], priority=5), Node("a", log, deps=["b"], priority=5),
                              Node("root", log, priority=999), Node("a_dep", log, deps=["root"]),
                              config=PluginConfig(allow_circular_dependencies=True))
    assert {p["state"] for p in manager.list_plugins()} == {"active"}
    # members start after their other dependencies, in (priority, name) order
    assert log.index("init a") < log.index("init b")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dependency cycle a -> b -> a" in w and "allow_circular_dependencies=True" in w
               for w in warnings)


async def test_cycle_members_start_after_their_other_dependencies():
    log: list = []
    manager = await start(Node("a", log, deps=["b", "z_base"], priority=1),
                          Node("b", log, deps=["a"], priority=2), Node("z_base", log, priority=3),
                          config=PluginConfig(allow_circular_dependencies=True))
    assert log == ["init z_base", "init a", "init b"]
    assert len(manager.list_plugins()) == 3


# -- missing dependencies ------------------------------------------------------------------------

async def test_missing_dependency_names_what_is_missing_and_what_is_available():
    log: list = []
    manager = await start(Node("jwt_auth", log, deps=["jwt_handler>=1.0,<2"]),
                          Node("cors", log, version="2.3.0"), Node("request_id", log))
    err = (await health(manager, "jwt_auth"))["error"]
    assert "plugin 'jwt_auth' needs 'jwt_handler" in err
    assert "which is not registered" in err
    assert "(registered: cors 2.3.0, jwt_auth 1.0.0, request_id 1.0.0)" in err
    assert "register 'jwt_handler' or set auto_resolve_dependencies=True" in err
    assert (await health(manager, "jwt_auth"))["state"] == "failed"
    assert (await manager.get_health_status())["status"] == "degraded"
    assert sorted(log) == ["init cors", "init request_id"]


PLUGIN_FILE = '''
from covet_pipe import MiddlewarePlugin

class Helper(MiddlewarePlugin):
    name = "helper"
    version = "1.4.0"
    priority = 5

    def process_response(self, response, ctx):
        response.headers.add("x-node", "helper")

plugin = Helper()
'''


async def test_auto_resolve_dependencies_loads_the_missing_plugin_from_plugin_paths(tmp_path):
    (tmp_path / "helper.py").write_text(PLUGIN_FILE)
    (tmp_path / "unrelated.py").write_text("raise RuntimeError('must not be imported')\n")
    log: list = []
    manager = await start(Node("user", log, deps=["helper>=1.2"]),
                          config=PluginConfig(plugin_paths=[str(tmp_path)], auto_resolve_dependencies=True))
    plugins = {p["name"]: p for p in manager.list_plugins()}
    assert plugins["helper"]["state"] == "active" and plugins["helper"]["version"] == "1.4.0"
    assert plugins["helper"]["source"] == "file"
    assert plugins["user"]["state"] == "active"
    result = await asgi_call(wrap(text_app, manager))
    assert result.getall("x-node") == ["user", "helper"]


async def test_auto_resolve_dependencies_reports_a_dependency_it_cannot_find(tmp_path):
    manager = await start(Node("user", [], deps=["ghost"]),
                          config=PluginConfig(plugin_paths=[str(tmp_path)], auto_resolve_dependencies=True))
    err = (await health(manager, "user"))["error"]
    assert "plugin 'user' needs 'ghost', which is not registered" in err
    assert "auto_resolve_dependencies" not in err     # it was on: no advice to turn it on


# -- initialize failures -------------------------------------------------------------------------

def test_failed_initialize_marks_it_failed_skips_dependents_and_the_rest_serve(serve):
    log: list = []
    manager = PluginManager()
    manager.register(Node("broken", log, fail=True, policy="open"))
    manager.register(Node("needs_broken", log, deps=["broken"], policy="open"))
    manager.register(Node("needs_needs_broken", log, deps=["needs_broken"], policy="open"))
    manager.register(Node("fine", log))
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/")
        status = {p["name"]: (p["state"], p["error"]) for p in manager.list_plugins()}
    assert (r.status_code, r.headers.get_list("x-node")) == (200, ["fine"])
    assert status["broken"] == ("failed", "initialize() raised RuntimeError: broken cannot start")
    assert status["needs_broken"][0] == "failed"
    assert status["needs_broken"][1].startswith(
        "plugin 'needs_broken' was not started: its dependency 'broken' failed (initialize() raised")
    assert status["needs_needs_broken"][0] == "failed"
    assert "its dependency 'needs_broken' failed" in status["needs_needs_broken"][1]
    assert status["fine"] == ("active", None)
    assert [p["state"] for p in manager.list_plugins() if p["name"] == "fine"] == ["stopped"]
    assert log == ["init fine", "stop fine"]     # failed plugins are never shut down


def test_failed_fail_closed_middleware_answers_503_instead_of_being_skipped(serve):
    log: list = []
    manager = PluginManager()
    manager.register(Node("early", log, priority=1))
    manager.register(Node("guard", log, fail=True, priority=5))       # failure_policy="closed"
    manager.register(Node("late", log, priority=9))
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/")
    assert r.status_code == 503
    assert r.json() == {"error": "Service Unavailable"}
    # the plugins before it ran and unwound; the app and the plugins after it did not run
    assert r.headers.get_list("x-node") == ["early"]


async def test_initialize_timeout_marks_the_plugin_failed():
    import asyncio

    class Hangs(Node):
        async def initialize(self, ctx):
            await asyncio.sleep(60)

    manager = await start(Hangs("hangs", []), Node("ok", []), config=PluginConfig(initialize_timeout=0.1))
    hangs = await health(manager, "hangs")
    assert hangs["state"] == "failed"
    assert hangs["error"] == ("initialize() did not finish within 0.1 s (PluginConfig.initialize_timeout)")
    assert (await health(manager, "ok"))["state"] == "active"


# -- services ------------------------------------------------------------------------------------

class Clock(Plugin):
    name = "clock"
    version = "1.0.0"

    def __init__(self) -> None:
        self.service = {"now": lambda: "12:00"}


class UsesClock(MiddlewarePlugin):
    name = "uses_clock"
    version = "1.0.0"
    dependencies = ["clock>=1"]

    async def initialize(self, ctx):
        self.at_start = ctx.get_service("clock")["now"]()
        self.greeting = ctx.get_service("greeting")

    def process_request(self, request, ctx):
        request.headers.set("x-seen", ctx.get_service("clock")["now"]())
        with pytest.raises(ServiceNotFoundError) as missing:
            ctx.get_service("calendar")
        ctx.state["missing"] = str(missing.value)

    def process_response(self, response, ctx):
        response.headers.set("x-missing", ctx.state["missing"])


async def test_plugins_find_services_through_the_context():
    manager = PluginManager()
    manager.provide_service("greeting", "hello")
    user = UsesClock()
    manager.register(user)
    manager.register(Clock())
    await manager.initialize_all()
    assert (user.at_start, user.greeting) == ("12:00", "hello")
    result = await asgi_call(wrap(text_app, manager))
    assert result.body == b"GET / seen=12:00"
    assert result.header("x-missing") == (
        "no service 'calendar'; available services: clock, greeting, uses_clock; register a plugin "
        "named 'calendar' or call manager.provide_service('calendar', obj)")
    # non-middleware plugins are not in the chain
    assert [e.name for e in manager.get_middleware_chain()] == ["uses_clock"]


async def test_service_of_a_failed_plugin_says_why():
    class Asker(Node):
        async def initialize(self, ctx):
            with pytest.raises(ServiceNotFoundError) as missing:
                ctx.get_service("broken")
            self.why = str(missing.value)

    asker = Asker("asker", [], priority=2000)         # starts after 'broken' failed
    await start(Node("broken", [], fail=True), asker)
    assert asker.why.startswith(
        "plugin 'broken' failed: initialize() raised RuntimeError: broken cannot start; "
        "available services: asker;")


# -- states --------------------------------------------------------------------------------------

async def test_states_go_registered_active_stopped_or_failed():
    log: list = []
    manager = PluginManager()
    manager.register(Node("good", log))
    manager.register(Node("bad", log, fail=True))
    assert {p["name"]: p["state"] for p in manager.list_plugins()} == {"bad": "registered",
                                                                        "good": "registered"}
    await manager.initialize_all()
    assert {p["name"]: p["state"] for p in manager.list_plugins()} == {"bad": "failed", "good": "active"}
    assert [(e.name, e.state) for e in manager.get_middleware_chain()] == [("bad", "failed"),
                                                                            ("good", "active")]
    await manager.shutdown_all()
    assert {p["name"]: p["state"] for p in manager.list_plugins()} == {"bad": "failed", "good": "stopped"}
    health_status = await manager.get_health_status()
    assert (health_status["status"], health_status["manager"]) == ("degraded", "closed")
