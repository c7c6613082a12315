"""Storage calls through a real ``covet-pipe serve``: N calls a plugin makes, and the app's, are what the scrape says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from covet_pipe import PluginManager
from covet_pipe.builtin import MemoryStorage
from covet_pipe.storage_counts import OPERATIONS, is_counted
from tests._process import free_port, start_until_ready, stop
from tests.metrics._served import SCRAPE_TOKEN, get, scrape, value

N = 40          #: requests to /visit: the plugin makes 2 calls each (set, get)
E = 3           #: requests to /bad: the plugin's set with a str value raises (an error of `set`)
A = 5           #: requests to /app: the app calls exists() through manager.get_storage_engine()

APP = f"""\
from covet_pipe import MiddlewarePlugin, PluginManager, Response, wrap
from covet_pipe.builtin import MemoryStorage, PrometheusMetrics

class Visits(MiddlewarePlugin):
    name = "visits"
    version = "1.0.0"
    dependencies = ["memory"]

    async def initialize(self, ctx):
        self.store = ctx.get_service("memory")

    async def process_request(self, request, ctx):
        if request.path == "/visit":
            await self.store.set("visits", b"1")
            await self.store.get("visits")
        elif request.path == "/bad":
            try:
                await self.store.set("visits", "text, not bytes")
            except TypeError:
                return Response(400, [("content-type", "text/plain")], b"bad")
        return None

manager = PluginManager()
manager.register(MemoryStorage())
manager.register(Visits())
manager.register(PrometheusMetrics(manager, token={SCRAPE_TOKEN!r}))

async def hello(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/app":
        await manager.get_storage_engine().exists("visits")
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"hello"}})

app = wrap(hello, manager)
"""


def test_a_scrape_counts_the_storage_calls_a_plugin_and_the_app_made(tmp_path: Path) -> None:
    (tmp_path / "storageapp.py").write_text(APP)
    port = free_port()
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "storageapp:app", "--app-dir", str(tmp_path),
           "--port", str(port), "--log-level", "warning"]
    proc = start_until_ready(cmd, port, tmp_path, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        before = scrape(base)
        for op in OPERATIONS:           # every operation shows, at 0, before anything is counted
            assert value(before, "covet_pipe_storage_calls_total", plugin="memory", operation=op) == 0
            assert value(before, "covet_pipe_storage_errors_total", plugin="memory", operation=op) == 0
        for _ in range(N):
            assert get(base + "/visit")[0] == 200
        for _ in range(E):
            assert get(base + "/bad")[0] == 400
        for _ in range(A):
            assert get(base + "/app")[0] == 200
        for _ in range(10):             # requests that use no storage count nothing
            assert get(base + "/")[0] == 200
        s = scrape(base)
    finally:
        stop(proc)
    calls = {op: value(s, "covet_pipe_storage_calls_total", plugin="memory", operation=op) for op in OPERATIONS}
    errors = {op: value(s, "covet_pipe_storage_errors_total", plugin="memory", operation=op) for op in OPERATIONS}
    assert calls == {"get": N, "set": N + E, "delete": 0, "exists": A, "expire": 0, "ttl": 0}
    assert errors == {"get": 0, "set": E, "delete": 0, "exists": 0, "expire": 0, "ttl": 0}
    assert not [k for k in s if k[0].startswith("covet_pipe_storage") and ("plugin", "visits") in k[1]]


async def test_the_view_is_the_engine_and_its_counts_outlive_a_new_engine_under_the_name() -> None:
    manager = PluginManager()
    engine = MemoryStorage()
    manager.register(engine)
    await manager.initialize_all()
    try:
        store = manager.get_storage_engine("memory")
        assert is_counted(store) and store._engine is engine
        assert store is manager.get_storage_engine() is manager.services.get_service("memory")
        assert store.name == "memory" and store.suspends is False and store.max_keys == engine.max_keys
        await store.set("k", b"v")
        assert await store.get("k") == b"v" and await store.ttl("k") == float("inf")
        with pytest.raises(ValueError):
            await store.set("k", b"v", ttl=-1)
        assert manager.storage_counts()["memory"]["set"] == (2, 1)
        # a new engine under the same name (as a reload gives) is seen through a new view on the same counts
        other = manager.services.storage.view("memory", MemoryStorage())
        assert other is not store
        await other.delete("k")
        assert manager.storage_counts()["memory"]["delete"] == (1, 0)
        assert manager.storage_counts()["memory"]["set"] == (2, 1)
    finally:
        await manager.shutdown_all()
    await manager.unload_plugin("memory")
    assert manager.storage_counts() == {}
