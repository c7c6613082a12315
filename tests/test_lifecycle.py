"""Lifespan, first-request start-up, idempotent initialisation, late registration."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from tests._helpers import WAIT, asgi_call
from tests.conftest import text_app


class Tracked(MiddlewarePlugin):
    """Records its lifecycle in a shared list and stamps x-tracked on responses."""

    version = "1.0.0"

    def __init__(self, name: str, events: list) -> None:
        self.name = name
        self.events = events
        self.initialized = 0

    async def initialize(self, ctx):
        self.initialized += 1
        self.events.append(f"{self.name}.init")

    async def shutdown(self):
        self.events.append(f"{self.name}.shutdown")

    def process_response(self, response, ctx):
        response.headers.add("x-tracked", self.name)


def lifespan_app(events: list):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    events.append("app.startup")
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    events.append("app.shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await text_app(scope, receive, send)
    return app


def states(manager: PluginManager) -> dict:
    return {p["name"]: p["state"] for p in manager.list_plugins()}


def test_lifespan_starts_plugins_before_app_startup_and_stops_them_after_app_shutdown(serve):
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("tracked", events))
    with serve(wrap(lifespan_app(events), manager)) as s:
        assert events == ["tracked.init", "app.startup"]
        assert states(manager) == {"tracked": "active"}
        r = httpx.get(s.url + "/x")
        assert (r.status_code, r.headers["x-tracked"]) == (200, "tracked")
    assert events == ["tracked.init", "app.startup", "app.shutdown", "tracked.shutdown"]
    assert states(manager) == {"tracked": "stopped"}


async def _raises_on_lifespan(scope, receive, send):
    assert scope["type"] == "http", "this app only speaks HTTP"
    await text_app(scope, receive, send)


async def _returns_on_lifespan(scope, receive, send):
    if scope["type"] != "http":
        return
    await text_app(scope, receive, send)


@pytest.mark.parametrize("app", [_raises_on_lifespan, _returns_on_lifespan], ids=["raises", "returns"])
def test_app_without_lifespan_support_still_gets_its_plugins_started_and_stopped(serve, app):
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("tracked", events))
    with serve(wrap(app, manager)) as s:
        assert events == ["tracked.init"]                # started by lifespan, before any request
        r = httpx.get(s.url + "/")
        assert (r.status_code, r.headers["x-tracked"]) == (200, "tracked")
    assert events == ["tracked.init", "tracked.shutdown"]


class SlowStart(Tracked):
    def __init__(self, name: str, events: list) -> None:
        super().__init__(name, events)
        self.entered = threading.Event()
        self.gate = threading.Event()

    async def initialize(self, ctx):
        self.entered.set()
        await asyncio.to_thread(self.gate.wait, WAIT)
        await super().initialize(ctx)


def test_lifespan_off_first_request_initialises_and_concurrent_requests_wait(serve):
    events: list = []
    manager = PluginManager()
    slow = SlowStart("slow", events)
    manager.register(slow)
    with serve(wrap(text_app, manager), lifespan="off") as s, \
            concurrent.futures.ThreadPoolExecutor(3) as pool:
        assert states(manager) == {"slow": "registered"}
        futures = [pool.submit(httpx.get, f"{s.url}/{i}", timeout=WAIT) for i in range(3)]
        assert slow.entered.wait(WAIT)
        done, _ = concurrent.futures.wait(futures, timeout=0.3)
        assert not done, "a request was answered before the plugins were started"
        slow.gate.set()
        answers = [f.result(WAIT) for f in futures]
    assert [(r.status_code, r.headers.get("x-tracked")) for r in answers] == [(200, "slow")] * 3
    assert slow.initialized == 1
    assert states(manager) == {"slow": "active"}     # no lifespan: nothing shut it down


async def test_initialize_all_is_idempotent_and_concurrent_calls_start_once():
    events: list = []
    manager = PluginManager()
    plugin = Tracked("tracked", events)
    manager.register(plugin)
    await asyncio.gather(manager.initialize_all(), manager.initialize_all())
    generation = (await manager.get_health_status())["chain_generation"]
    await manager.initialize_all()
    assert plugin.initialized == 1
    assert (await manager.get_health_status())["chain_generation"] == generation
    assert events == ["tracked.init"]


def test_register_after_start_is_picked_up_before_the_next_request(serve):
    events: list = []
    manager = PluginManager()
    manager.register(Tracked("first", events))
    with serve(wrap(text_app, manager)) as s, httpx.Client(base_url=s.url, timeout=WAIT) as client:
        assert client.get("/").headers.get_list("x-tracked") == ["first"]
        late = Tracked("late", events)
        manager.register(late)
        assert states(manager)["late"] == "registered"
        r = client.get("/")
        assert sorted(r.headers.get_list("x-tracked")) == ["first", "late"]
        assert states(manager) == {"first": "active", "late": "active"}
    assert late.initialized == 1
    assert events.count("first.init") == 1
    assert sorted(events[-2:]) == ["first.shutdown", "late.shutdown"]


class SlowStop(Tracked):
    def __init__(self, name: str, events: list) -> None:
        super().__init__(name, events)
        self.stopping = asyncio.Event()
        self.gate = asyncio.Event()

    async def shutdown(self):
        self.stopping.set()
        await self.gate.wait()
        await super().shutdown()


async def test_requests_during_shutdown_get_503_and_after_it_start_the_plugins_again():
    events: list = []
    manager = PluginManager()
    plugin = SlowStop("tracked", events)
    manager.register(plugin)
    app = wrap(text_app, manager)
    assert (await asgi_call(app)).status == 200         # the first request started the plugins
    stopping = asyncio.create_task(manager.shutdown_all())
    await asyncio.wait_for(plugin.stopping.wait(), WAIT)
    result = await asgi_call(app)                       # not a half-stopped chain
    assert (result.status, result.json()) == (503, {"error": "Service Unavailable"})
    plugin.gate.set()
    await stopping
    assert manager.status == "closed"
    # as a Starlette stack serves on after its lifespan ended: the next request starts the plugins again
    result = await asgi_call(app)
    assert (result.status, result.header("x-tracked")) == (200, "tracked")
    assert events == ["tracked.init", "tracked.shutdown", "tracked.init"]
    assert manager.status == "running"


async def test_register_during_initialize_all_is_started_before_the_next_request():
    events: list = []
    manager = PluginManager()
    slow = SlowStart("slow", events)
    manager.register(slow)
    starting = asyncio.create_task(manager.initialize_all())
    assert await asyncio.to_thread(slow.entered.wait, WAIT)
    late = Tracked("late", events)
    manager.register(late)                      # while initialize_all is still running
    slow.gate.set()
    await starting
    result = await asgi_call(wrap(text_app, manager))
    assert sorted(result.getall("x-tracked")) == ["late", "slow"]
    assert states(manager) == {"late": "active", "slow": "active"}
    assert late.initialized == 1


def test_changes_made_on_a_later_event_loop_wait_on_a_lock_of_that_loop():
    # Plugins started and changed under one asyncio.run(), then changed under another (a server's loop,
    # say) with no initialize_all there: two unloads at once on each loop, the second waiting for the first.
    events: list = []
    manager = PluginManager()
    for name in "abcd":
        manager.register(Tracked(name, events))

    async def start_then_unload_two() -> list:
        await manager.initialize_all()
        return await asyncio.gather(manager.unload_plugin("a"), manager.unload_plugin("b"))

    async def unload_two() -> list:
        return await asyncio.gather(manager.unload_plugin("c"), manager.unload_plugin("d"))

    assert asyncio.run(start_then_unload_two()) == [["a"], ["b"]]
    assert asyncio.run(unload_two()) == [["c"], ["d"]]
    assert events[-2:] == ["c.shutdown", "d.shutdown"] and states(manager) == {}
