"""The rooms under the manager, on their own: Snapshots over a Registry, and the registry's need/replace."""

from __future__ import annotations

import asyncio

import pytest

from covet_pipe import (
    MiddlewarePlugin,
    PluginConfig,
    PluginManager,
    PluginNotFoundError,
    ProtocolPlugin,
    Request,
    wrap,
)
from covet_pipe.registry import Registry
from covet_pipe.snapshots import Snapshots
from covet_pipe.testing import call, make_context
from covet_pipe.validation import validate
from tests.conftest import text_app


class Mark(MiddlewarePlugin):
    version = "1.0.0"

    def __init__(self, name: str, priority: int = 1000, policy: str = "closed") -> None:
        self.name = name
        self.priority = priority
        self.failure_policy = policy

    def process_response(self, response, ctx):
        response.headers.add("x-mark", self.name)


class Speaks(ProtocolPlugin):
    version = "1.0.0"

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.protocol_name = name
        self.priority = priority


def registry_with(*plugins_and_states) -> Registry:
    registry = Registry(PluginConfig())
    for plugin, state in plugins_and_states:
        record = validate(plugin)
        registry.add(record)
        record.state = state
    return registry


def test_rebuild_swaps_in_the_active_middleware_and_the_fail_closed_failures_in_order():
    registry = registry_with((Mark("late", 20), "active"), (Mark("early", 10), "active"),
                             (Mark("guard", 15), "failed"), (Mark("optional", 16, "open"), "failed"),
                             (Mark("waiting", 5), "registered"))
    snapshots = Snapshots(registry)
    first = snapshots.current
    replaced = snapshots.rebuild()
    assert replaced is first and snapshots.current is not first
    assert snapshots.generation == 1 == snapshots.current.generation
    # the fail-closed guard holds its place (it answers 503); open and not-started ones are left out
    assert [e.name for e in snapshots.current.entries] == ["early", "guard", "late"]
    snapshots.rebuild()
    assert snapshots.generation == 2 == snapshots.current.generation


async def test_the_chain_a_pipeline_serves_is_the_managers_public_chain():
    manager = PluginManager()
    manager.register(Mark("one"))
    pipeline = wrap(text_app, manager)
    assert pipeline.chain is manager.chain
    result = await call(pipeline, "GET", "/")
    assert result.status == 200 and result.headers.getall("x-mark") == ["one"]
    assert manager.chain.current.generation == (await manager.get_health_status())["chain_generation"]


def test_rebuild_lists_the_active_protocol_plugins_in_priority_then_name_order():
    registry = registry_with((Speaks("zeta", 50), "active"), (Speaks("alpha", 50), "active"),
                             (Speaks("first", 10), "active"), (Speaks("broken", 1), "failed"))
    snapshots = Snapshots(registry)
    assert snapshots.protocols == ()
    snapshots.rebuild()
    assert [r.name for r in snapshots.protocols] == ["first", "alpha", "zeta"]


async def test_drain_with_nothing_in_flight_is_done_at_once():
    snapshots = Snapshots(registry_with((Mark("one"), "active")))
    old = snapshots.rebuild()
    assert await asyncio.wait_for(snapshots.drain(old), 1) is True


def test_the_lock_is_one_per_event_loop():
    snapshots = Snapshots(Registry(PluginConfig()))

    async def twice():
        return snapshots.lock(), snapshots.lock()

    a1, a2 = asyncio.run(twice())
    b1, _ = asyncio.run(twice())
    assert a1 is a2 and b1 is not a1


def test_need_names_the_registered_plugins_when_one_is_missing():
    registry = registry_with((Mark("beta"), "active"), (Mark("alpha"), "active"))
    assert registry.need("beta").name == "beta"
    with pytest.raises(PluginNotFoundError, match=r"^no plugin named 'gamma'; registered: alpha, beta$"):
        registry.need("gamma")


def test_replace_takes_any_state_and_the_operators_failure_policy():
    registry = Registry(PluginConfig(failure_policies={"mark": "open"}))
    old = validate(Mark("mark"))
    registry.add(old)
    old.state = "active"
    new = validate(Mark("mark"))            # add() would refuse it: the name is taken by an active one
    registry.replace(new)
    assert registry.get("mark") is new and registry.records() == [new]
    assert (new.failure_policy, new.plugin.failure_policy) == ("open", "open")
    registry.replace(old)
    assert registry.get("mark") is old


async def test_manager_services_serve_a_hook_called_directly():
    class Reads(MiddlewarePlugin):
        name = "reads"
        version = "1.0.0"

        def process_request(self, request, ctx):
            request.headers.set("x-clock", ctx.get_service("clock"))

    manager = PluginManager()
    manager.provide_service("clock", "12:00")
    request = Request(path="/")
    Reads().process_request(request, make_context(request, services=manager.services))
    assert request.headers.get("x-clock") == "12:00"
