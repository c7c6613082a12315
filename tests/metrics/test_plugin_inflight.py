"""Per plugin and protocol: each protocol its own counters, the in-flight gauge, call_next timing."""

from __future__ import annotations

import asyncio

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe._core import PluginStats
from covet_pipe.metrics.readings import read
from tests._helpers import asgi_call, echo_app

SAMPLE_EVERY = 64


class Both(MiddlewarePlugin):
    name = "both"
    version = "1.0.0"
    protocols = ["http", "websocket"]

    def process_request(self, request, ctx):
        if request.path == "/no":
            from covet_pipe import MiddlewareAction
            return MiddlewareAction.reject(403)
        return None


class Gate(MiddlewarePlugin):
    """An async hook that waits on an event the test sets: a request waits inside this plugin."""

    name = "gate"
    version = "1.0.0"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0

    async def process_request(self, request, ctx):
        self.entered += 1
        await self.open.wait()


class Timed(MiddlewarePlugin):
    """A call_next plugin that waits a little around the app."""

    name = "timed"
    version = "1.0.0"
    style = "call_next"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def process_request(self, request, call_next):
        await self.release.wait()
        return await call_next(request)


def _value(readings, family, labels):
    return dict(readings[family])[labels]


async def _ws_handshake(app) -> list[dict]:
    inbox = [{"type": "websocket.connect"}]
    sent: list[dict] = []

    async def receive():
        if inbox:
            return inbox.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": "/ws", "raw_path": b"/ws",
             "query_string": b"", "headers": [], "scheme": "ws", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000), "subprotocols": []}
    await app(scope, receive, send)
    return sent


async def _ws_app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1000})
        return
    await echo_app(scope, receive, send)


async def test_a_plugin_on_two_protocols_counts_each_apart_and_sums_them_for_operators() -> None:
    manager = PluginManager()
    manager.register(Both())
    await manager.initialize_all()
    app = wrap(_ws_app, manager)
    for _ in range(5):
        assert (await asgi_call(app, "/")).status == 200
    assert (await asgi_call(app, "/no")).status == 403
    for _ in range(2):
        await _ws_handshake(app)
    r = read(manager, server=False)
    assert _value(r, "covet_pipe_plugin_calls", ("both", "http")) == 6
    assert _value(r, "covet_pipe_plugin_calls", ("both", "websocket")) == 2
    assert _value(r, "covet_pipe_plugin_short_circuits", ("both", "http", "4xx")) == 1
    assert ("both", "websocket", "4xx") not in dict(r["covet_pipe_plugin_short_circuits"])
    stats = {p["name"]: p for p in manager.list_plugins()}["both"]["stats"]
    assert stats["calls"] == 8 and stats["short_circuits"] == 1
    assert (await manager.get_health_status())["plugins"]["both"]["calls"] == 8
    entry = manager.chain.current.entries[0]
    assert {p: s.calls for p, s in entry.protocol_stats.items()} == {"http": 6, "websocket": 2}


async def test_the_counts_per_protocol_carry_across_a_snapshot_rebuild() -> None:
    manager = PluginManager()
    manager.register(Both())
    await manager.initialize_all()
    app = wrap(_ws_app, manager)
    await asgi_call(app, "/")
    await _ws_handshake(app)
    before = manager.chain.current
    manager.register(Gate())        # a new snapshot: the entries are built again
    await manager.initialize_all()
    assert manager.chain.current is not before
    r = read(manager, server=False)
    assert _value(r, "covet_pipe_plugin_calls", ("both", "http")) == 1
    assert _value(r, "covet_pipe_plugin_calls", ("both", "websocket")) == 1


def test_merged_sums_every_counter_and_bucket() -> None:
    a, b = PluginStats(), PluginStats()
    a.calls, b.calls, a.errors, b.inflight, a.sampled_calls, b.sampled_ns = 3, 4, 1, 2, 5, 7
    m = PluginStats.merged([a, b])
    assert (m.calls, m.errors, m.inflight, m.sampled_calls, m.sampled_ns) == (7, 1, 2, 5, 7)
    assert sum(PluginStats.merged([]).hook_histogram()[1]) == 0


async def test_the_inflight_gauge_counts_requests_waiting_in_an_async_hook_and_falls_back() -> None:
    gate = Gate()
    manager = PluginManager()
    manager.register(gate)
    await manager.initialize_all()
    app = wrap(echo_app, manager)
    tasks = [asyncio.ensure_future(asgi_call(app, "/")) for _ in range(3)]
    for _ in range(100):
        if gate.entered == 3:
            break
        await asyncio.sleep(0.01)
    r = read(manager, server=False)
    assert _value(r, "covet_pipe_plugin_inflight", ("gate", "http")) == 3.0
    assert {p["name"]: p for p in manager.list_plugins()}["gate"]["stats"]["inflight"] == 3
    tasks[0].cancel()               # a request cancelled while it waits leaves the gauge too
    await asyncio.sleep(0.05)
    assert _value(read(manager, server=False), "covet_pipe_plugin_inflight", ("gate", "http")) == 2.0
    gate.open.set()
    results = await asyncio.gather(*tasks[1:])
    assert [x.status for x in results] == [200, 200]
    assert _value(read(manager, server=False), "covet_pipe_plugin_inflight", ("gate", "http")) == 0.0


async def test_a_call_next_plugin_is_in_flight_while_its_process_request_runs_and_is_timed() -> None:
    timed = Timed()
    manager = PluginManager()
    manager.register(timed)
    await manager.initialize_all()
    app = wrap(echo_app, manager)
    task = asyncio.ensure_future(asgi_call(app, "/"))
    await asyncio.sleep(0.05)
    assert _value(read(manager, server=False), "covet_pipe_plugin_inflight", ("timed", "http")) == 1.0
    timed.release.set()
    assert (await task).status == 200
    assert _value(read(manager, server=False), "covet_pipe_plugin_inflight", ("timed", "http")) == 0.0
    for _ in range(SAMPLE_EVERY * 2):
        assert (await asgi_call(app, "/")).status == 200
    entry = manager.chain.current.entries[0]
    assert entry.stats.sampled_calls >= 1
    assert entry.stats.hook_quantile_us(0.5) is not None
    assert entry.stats.inflight == 0
