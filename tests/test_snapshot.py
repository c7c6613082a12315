"""Snapshot pinning and drain: a request finishes on the chain it started with."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import httpx

from covet_pipe import MiddlewarePlugin, PluginConfig, PluginManager, wrap
from tests._helpers import WAIT, asgi_call, on_server_loop, server_loop, submit
from tests.conftest import text_app


class Waiter(MiddlewarePlugin):
    """Holds requests to /slow in its async request hook until released."""

    name = "waiter"
    version = "1.0.0"
    priority = 10

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release: asyncio.Event | None = None

    async def initialize(self, ctx):
        self.release = asyncio.Event()      # on the loop that serves

    async def process_request(self, request, ctx):
        if request.path == "/slow":
            self.entered.set()
            await self.release.wait()


class Marker(MiddlewarePlugin):
    """Stamps x-chain with its name; remembers whether it had been shut down when it ran."""

    version = "1.0.0"

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.priority = priority
        self.stopped = False
        self.ran_after_shutdown = False
        self.events: list = []

    def process_response(self, response, ctx):
        self.ran_after_shutdown |= self.stopped
        self.events.append(f"response {ctx.request.path}")
        response.headers.add("x-chain", self.name)

    async def shutdown(self):
        self.stopped = True
        self.events.append("shutdown")


async def chain_generation(manager: PluginManager) -> int:
    return (await manager.get_health_status())["chain_generation"]


def chain_of(r: httpx.Response) -> list[str]:
    return sorted(r.headers.get_list("x-chain"))


def test_request_in_flight_finishes_on_its_old_chain_while_new_requests_see_the_new_one(serve):
    manager = PluginManager()
    waiter = Waiter()
    old = Marker("old", 20)
    manager.register(waiter)
    manager.register(old)
    with serve(wrap(text_app, manager)) as s, concurrent.futures.ThreadPoolExecutor(1) as pool, \
            httpx.Client(base_url=s.url, timeout=WAIT) as client:
        slow = pool.submit(httpx.get, s.url + "/slow", timeout=WAIT)
        assert waiter.entered.wait(WAIT)

        # swap 1: register and start a new plugin while /slow is held on generation 1
        new = Marker("new", 30)

        async def add_new():
            manager.register(new)
            await manager.initialize_all()
        on_server_loop(s, add_new())
        assert chain_of(client.get("/fast")) == ["new", "old"]

        # swap 2: unload the old plugin; it must drain /slow (still on generation 1) first
        unloading = submit(s, manager.unload_plugin("old"))
        assert chain_of(client.get("/fast")) == ["new"]
        done, _ = concurrent.futures.wait([unloading], timeout=0.5)
        assert not done, "unload_plugin shut 'old' down while a request still ran on it"
        assert not old.stopped

        server_loop(s).call_soon_threadsafe(waiter.release.set)
        first = slow.result(WAIT)
        assert unloading.result(WAIT) == ["old"]
    assert first.status_code == 200
    assert chain_of(first) == ["old"]            # the old chain's headers only
    assert old.stopped and not old.ran_after_shutdown
    assert old.events[-2:] == ["response /slow", "shutdown"]
    assert new.events.count("response /slow") == 0


async def test_unload_waits_for_the_in_flight_request_before_shutdown():
    manager = PluginManager()
    waiter = Waiter()
    old = Marker("old", 20)
    manager.register(waiter)
    manager.register(old)
    await manager.initialize_all()
    app = wrap(text_app, manager)
    slow = asyncio.create_task(asgi_call(app, "/slow"))
    await asyncio.to_thread(waiter.entered.wait, WAIT)
    generation = await chain_generation(manager)
    unloading = asyncio.create_task(manager.unload_plugin("old"))
    while await chain_generation(manager) == generation:    # until the swap
        await asyncio.sleep(0.01)
    fast = await asgi_call(app, "/fast")                      # meanwhile, the new chain serves
    assert fast.getall("x-chain") == []
    assert not unloading.done() and not old.stopped
    health = await manager.get_health_status()
    assert health["plugins"]["old"]["state"] == "draining"
    waiter.release.set()
    assert (await slow).getall("x-chain") == ["old"]
    assert await unloading == ["old"]
    assert old.events == ["response /slow", "shutdown"]
    assert "old" not in (await manager.get_health_status())["plugins"]


async def test_drain_gives_up_after_drain_timeout_and_logs_it(caplog):
    manager = PluginManager(PluginConfig(drain_timeout=0.2))
    waiter = Waiter()
    old = Marker("old", 20)
    manager.register(waiter)
    manager.register(old)
    await manager.initialize_all()
    app = wrap(text_app, manager)
    slow = asyncio.create_task(asgi_call(app, "/slow"))
    await asyncio.to_thread(waiter.entered.wait, WAIT)
    with caplog.at_level(logging.WARNING, logger="covet_pipe.manager"):
        assert await asyncio.wait_for(manager.unload_plugin("old"), WAIT) == ["old"]
    assert old.stopped
    assert any("drain_timeout" in r.getMessage() for r in caplog.records)
    waiter.release.set()
    assert (await slow).status == 200       # the request still finishes


async def test_shutdown_all_waits_for_requests_in_flight_on_any_older_chain():
    manager = PluginManager()
    waiter = Waiter()
    old = Marker("old", 20)
    manager.register(waiter)
    manager.register(old)
    await manager.initialize_all()
    app = wrap(text_app, manager)
    slow = asyncio.create_task(asgi_call(app, "/slow"))
    await asyncio.to_thread(waiter.entered.wait, WAIT)
    manager.register(Marker("later", 30))
    await manager.initialize_all()                 # generation 2; /slow still runs on generation 1
    stopping = asyncio.create_task(manager.shutdown_all())
    await asyncio.sleep(0.05)
    assert not stopping.done() and not old.stopped
    waiter.release.set()
    await slow
    await stopping
    assert old.events == ["response /slow", "shutdown"]


async def test_reload_serves_in_flight_request_on_the_old_version(tmp_path):
    source = '''
from covet_pipe import MiddlewarePlugin

class Versioned(MiddlewarePlugin):
    name = "versioned"
    version = "{version}"
    priority = 20
    events = []

    def process_response(self, response, ctx):
        response.headers.add("x-version", self.version)

    async def shutdown(self):
        type(self).events.append("shutdown " + self.version)

plugin = Versioned()
'''
    path = tmp_path / "versioned.py"
    path.write_text(source.format(version="1.0.0"))
    manager = PluginManager(PluginConfig(hot_reload=True))
    waiter = Waiter()
    manager.register(waiter)
    await manager.load_plugin_from_path(str(path))
    await manager.initialize_all()
    first = manager.get_plugin("versioned")
    generation = await chain_generation(manager)
    app = wrap(text_app, manager)
    slow = asyncio.create_task(asgi_call(app, "/slow"))
    await asyncio.to_thread(waiter.entered.wait, WAIT)
    path.write_text(source.format(version="2.0.0"))
    reloading = asyncio.create_task(manager.reload_plugin("versioned"))
    while await chain_generation(manager) == generation:    # until the new version is swapped in
        await asyncio.sleep(0.01)
    assert (await asgi_call(app, "/fast")).getall("x-version") == ["2.0.0"]
    assert not reloading.done() and first.events == []
    waiter.release.set()
    assert (await slow).getall("x-version") == ["1.0.0"]
    await reloading
    assert first.events == ["shutdown 1.0.0"]
    assert [p["version"] for p in manager.list_plugins() if p["name"] == "versioned"] == ["2.0.0"]


async def test_simple_chain_releases_the_snapshot_when_the_app_is_cancelled_dropped_or_raises():
    # A chain of sync hooks runs no coroutine of its own: the app's coroutine is awaited
    # through a small C awaitable that must still count the request out in every case.
    import asyncio
    import gc

    import pytest

    from covet_pipe import MiddlewarePlugin, PluginManager, wrap
    from tests._helpers import http_scope

    class Sync(MiddlewarePlugin):
        name = "sync"
        version = "1.0.0"

        def process_request(self, request, ctx):
            return None

    manager = PluginManager()
    manager.register(Sync())
    await manager.initialize_all()
    snap = manager.chain.current
    entered = asyncio.Event()

    async def waits(scope, receive, send):
        entered.set()
        await asyncio.Event().wait()

    async def raises(scope, receive, send):
        raise LookupError("the app's own error")

    async def receive():
        return {"type": "http.request", "body": b""}

    sent = []

    async def send(message):
        sent.append(message)

    task = asyncio.ensure_future(wrap(waits, manager)(http_scope("/"), receive, send))
    await asyncio.wait_for(entered.wait(), 10)
    assert snap.inflight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert snap.inflight == 0

    dropped = wrap(waits, manager)(http_scope("/"), receive, send)
    assert snap.inflight == 1
    dropped.close()                     # a server that gives up on a request before awaiting it
    assert snap.inflight == 0
    never = wrap(waits, manager)(http_scope("/"), receive, send)
    with pytest.warns(RuntimeWarning, match="was never awaited"):   # Python's word on the app's coroutine
        del never
        gc.collect()
    assert snap.inflight == 0

    sent.clear()
    await wrap(raises, manager)(http_scope("/"), receive, send)    # the pipeline answers for it
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 500
    assert snap.inflight == 0
