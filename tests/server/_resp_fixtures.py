"""RESP test fixtures: a real redis-server and our RESP protocol, each on a free 127.0.0.1 port.

Our server runs ``RespProtocol.connection_protocol`` behind ``loop.create_server`` in a thread with
its own event loop (the listener's protocol chain is tested on its own; these tests are about RESP).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator

import pytest

from covet_pipe import PluginManager
from covet_pipe.builtin import MemoryStorage, RespProtocol
from covet_pipe.protocol import ConnectionInfo, ServerContext
from tests._redis import START_TIMEOUT, RealRedis, free_port, need_redis, real_redis, wait_port

__all__ = ["START_TIMEOUT", "OurResp", "RealRedis", "free_port", "need_redis", "ours", "real_redis", "start_ours",
           "wait_port"]


class OurResp:
    """Our RESP protocol on a free port, served from a thread running its own event loop."""

    def __init__(self, manager: PluginManager, plugin: RespProtocol) -> None:
        self.manager = manager
        self.plugin = plugin
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._server: Any = None
        self.context: ServerContext | None = None
        self.thread = threading.Thread(target=self._main, name="resp-server", daemon=True)

    def start(self) -> OurResp:
        self.thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("our RESP server did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        await self.manager.initialize_all()
        ctx = ServerContext(None, self.manager, None, loop=self.loop)
        self.context = ctx

        def make() -> Any:
            return _Handover(self.plugin, ctx)

        self._server = await self.loop.create_server(make, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._server.close()
        for conn in list(self.context.connections):  # type: ignore[union-attr]
            conn.transport.close()
        await self._server.wait_closed()
        await self.manager.shutdown_all()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run *coro* on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=20)


class _Handover:
    def __init__(self, plugin: RespProtocol, ctx: ServerContext) -> None:
        self.plugin = plugin
        self.ctx = ctx
        self.inner: Any = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        info = ConnectionInfo(peer=tuple(peer[:2]), server=tuple(sock[:2]), scheme="redis")
        self.inner = self.plugin.connection_protocol(info, self.ctx)
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:  # pragma: no cover - set_protocol replaced us
        self.inner.data_received(data)

    def connection_lost(self, exc: Any) -> None:  # pragma: no cover
        if self.inner is not None:
            self.inner.connection_lost(exc)


def start_ours(*plugins: Any, resp: RespProtocol | None = None, storage: Any = None) -> OurResp:
    """Our RESP server over *storage* (a StoragePlugin; MemoryStorage when None) and *plugins*."""
    manager = PluginManager()
    manager.register(storage if storage is not None else MemoryStorage())
    for p in plugins:
        manager.register(p)
    resp = resp or RespProtocol()
    manager.register(resp)
    return OurResp(manager, resp).start()


@pytest.fixture
def ours() -> Iterator[Any]:
    """``ours(*plugins, storage=None)`` starts our RESP server with MemoryStorage (or *storage*) and those plugins."""
    started: list[OurResp] = []

    def start(*plugins: Any, resp: RespProtocol | None = None, storage: Any = None) -> OurResp:
        s = start_ours(*plugins, resp=resp, storage=storage)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def real_and_ours() -> Iterator[tuple[int, int]]:
    """(a real redis-server's port, our RESP server's port over MemoryStorage) for a whole test module."""
    need_redis()
    real, ours = RealRedis(), start_ours()
    try:
        yield real.port, ours.port
    finally:
        ours.stop()
        real.stop()
