"""PluginManager as a user drives it: registering, finding plugins by kind, unloading, and reporting.

Starting, stopping and dependency order are in test_registry.py and test_lifecycle.py, hot reload in
test_reload*.py, loading files in test_discovery.py; this file holds the rest of the facade's contract.
"""

from __future__ import annotations

import logging

import pytest

from covet_pipe import (
    AuthPlugin,
    MiddlewarePlugin,
    PluginError,
    PluginManager,
    PluginNotFoundError,
    PluginValidationError,
    ProtocolPlugin,
    StoragePlugin,
)


class Mw(MiddlewarePlugin):
    def __init__(self, name: str, *, deps: tuple[str, ...] = (), priority: int = 1000, fail: bool = False) -> None:
        self.name, self.version, self.dependencies, self.priority, self.fail = name, "1.2.3", list(deps), priority, fail

    async def initialize(self, ctx: object) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")

    def process_request(self, request: object, ctx: object) -> None:
        return None


class Store(StoragePlugin):
    version = "1.0"

    def __init__(self, name: str, priority: int = 1000) -> None:
        self.name, self.priority, self.data = name, priority, {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        return key in self.data


class Auth(AuthPlugin):
    name, version = "tokens", "1.0"

    async def authenticate(self, credentials: dict) -> dict | None:
        return {"user": "u"} if credentials.get("token") == "t" else None

    async def authorize(self, user: dict, resource: str, action: str) -> bool:
        return True


class Echo(ProtocolPlugin):
    version = "1.0"

    def __init__(self, name: str, speaks: str, priority: int = 1000) -> None:
        self.name, self.speaks, self.priority = name, speaks, priority

    def supported_protocols(self) -> list[str]:
        return [self.speaks]

    def detect(self, data: bytes) -> str:
        return "no"


async def test_register_returns_the_name_and_refuses_a_taken_one() -> None:
    manager = PluginManager()
    assert manager.register(Mw("a")) == "a"
    with pytest.raises(PluginValidationError, match="'a'"):
        manager.register(Mw("a"))
    assert [p["name"] for p in manager.list_plugins()] == ["a"]


async def test_get_plugin_of_an_unknown_name_lists_the_registered_ones() -> None:
    manager = PluginManager()
    manager.register(Mw("a"))
    manager.register(Mw("b"))
    assert isinstance(manager.get_plugin("a"), Mw)
    with pytest.raises(PluginNotFoundError, match=r"no plugin named 'c'; registered: a, b"):
        manager.get_plugin("c")


async def test_auth_provider_by_name_and_the_wrong_kind_says_which_exist() -> None:
    manager = PluginManager()
    manager.register(Auth())
    manager.register(Mw("mw"))
    await manager.initialize_all()
    provider = manager.get_auth_provider("tokens")
    assert await provider.authenticate({"token": "t"}) == {"user": "u"}
    with pytest.raises(PluginNotFoundError, match=r"no auth provider named 'mw'; registered auth providers: tokens"):
        manager.get_auth_provider("mw")
    await manager.shutdown_all()


async def test_storage_engine_without_a_name_is_the_first_by_priority_and_failed_ones_are_skipped() -> None:
    manager = PluginManager()
    with pytest.raises(PluginNotFoundError, match="no storage engine is registered"):
        manager.get_storage_engine()
    manager.register(Store("slow", priority=50))
    manager.register(Store("fast", priority=10))
    await manager.initialize_all()
    assert manager.get_storage_engine().name == "fast"
    assert manager.get_storage_engine("slow").name == "slow"
    await manager.shutdown_all()


async def test_a_failed_plugin_is_not_handed_out_and_health_says_degraded() -> None:
    manager = PluginManager()
    manager.register(Mw("ok"))
    manager.register(Mw("broken", fail=True))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["status"] == "degraded"
    assert health["plugins"]["broken"]["state"] == "failed"
    assert "broken cannot start" in health["plugins"]["broken"]["error"]
    assert health["plugins"]["ok"]["state"] == "active"
    assert health["manager"] == "running"
    await manager.shutdown_all()
    assert (await manager.get_health_status())["manager"] == "closed"


async def test_protocol_handler_is_the_first_speaker_and_the_records_follow_the_chain() -> None:
    manager = PluginManager()
    manager.register(Echo("late", "echo", priority=20))
    manager.register(Echo("early", "echo", priority=10))
    manager.register(Echo("other", "other"))
    await manager.initialize_all()
    assert manager.get_protocol_handler("echo").name == "early"
    assert [r.name for r in manager.protocol_records()] == ["early", "late", "other"]
    with pytest.raises(PluginNotFoundError, match="no protocol plugin speaks 'gopher'"):
        manager.get_protocol_handler("gopher")
    await manager.shutdown_all()


async def test_unload_refuses_while_others_depend_and_cascade_unloads_dependents_first() -> None:
    manager = PluginManager()
    manager.register(Mw("base"))
    manager.register(Mw("top", deps=("base",)))
    await manager.initialize_all()
    with pytest.raises(PluginError, match=r"cannot unload 'base': top depend\(s\) on it.*cascade=True"):
        await manager.unload_plugin("base")
    assert [e.name for e in manager.get_middleware_chain()] == ["base", "top"]
    assert await manager.unload_plugin("base", cascade=True) == ["top", "base"]
    assert manager.list_plugins() == []
    assert manager.get_middleware_chain() == ()
    await manager.shutdown_all()


async def test_middleware_chain_entries_describe_each_layer() -> None:
    manager = PluginManager()
    manager.register(Mw("a", priority=5))
    await manager.initialize_all()
    (entry,) = manager.get_middleware_chain()
    assert (entry.name, entry.version, entry.priority, entry.style, entry.state) == ("a", "1.2.3", 5, "hook",
                                                                                   "active")
    await manager.shutdown_all()


async def test_list_plugins_survives_a_metadata_method_that_raises() -> None:
    class Loud(Mw):
        def metadata(self) -> dict:
            raise ValueError("secret detail")

    manager = PluginManager()
    manager.register(Loud("loud"))
    (info,) = manager.list_plugins()
    assert info["metadata"] == {"error": "metadata() raised ValueError"}
    assert info["name"] == "loud" and info["version"] == "1.2.3"


async def test_provided_services_reach_plugins() -> None:
    seen = {}

    class User(Mw):
        async def initialize(self, ctx) -> None:
            seen["db"] = ctx.get_service("db")

    manager = PluginManager()
    manager.provide_service("db", {"dsn": "x"})
    manager.register(User("user"))
    await manager.initialize_all()
    assert seen["db"] == {"dsn": "x"}
    await manager.shutdown_all()


async def test_log_plugins_writes_a_line_per_plugin(caplog: pytest.LogCaptureFixture) -> None:
    manager = PluginManager()
    manager.register(Mw("a"))
    manager.register(Mw("b"))
    with caplog.at_level(logging.INFO, logger="covet_pipe.manager"):
        manager.log_plugins()
    lines = [r.getMessage() for r in caplog.records]
    assert any("a" in line and "1.2.3" in line for line in lines)
    assert any("b" in line for line in lines)
