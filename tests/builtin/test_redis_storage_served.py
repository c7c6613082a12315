"""Redis going away under a real ``covet-pipe serve`` (HTTP and RESP on one port, RedisStorage on a real
redis-server): a plugin's storage calls answer 503 without a traceback, RESP commands answer ``-ERR``
naming the engine, the scrape counts the calls and the errors, and all recovers when the same Redis is
back on its port, with no restart of our server; and with ``--workers 2``, what one worker stores the
other reads (the point of the engine: MemoryStorage would hold one copy per worker)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import redis

from tests._process import free_port, start_until_ready, stop
from tests._redis import real_redis  # noqa: F401  (fixture)
from tests.metrics._served import SCRAPE_TOKEN, get, scrape, value

APP = """\
from covet_pipe import MiddlewarePlugin, PluginManager, Response, wrap
from covet_pipe.builtin import PrometheusMetrics, RedisStorage, RespProtocol

class Visits(MiddlewarePlugin):
    name = "visits"
    version = "1.0.0"
    dependencies = ["redis"]

    async def initialize(self, ctx):
        self.store = ctx.get_service("redis")

    async def process_request(self, request, ctx):
        if request.path == "/visit":
            await self.store.set("visits", b"seen")
            return Response(200, [("content-type", "text/plain")], await self.store.get("visits"))
        return None

manager = PluginManager()
manager.register(RedisStorage({url!r}, timeout=2.0))
manager.register(RespProtocol())
manager.register(Visits())
manager.register(PrometheusMetrics(manager, token={token!r}))

async def hello(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"hello"}})

app = wrap(hello, manager)
"""


def test_redis_down_mid_run_is_a_503_and_an_err_reply_and_all_recovers_without_a_restart(tmp_path: Path,
                                                                                          real_redis) -> None:
    (tmp_path / "redisapp.py").write_text(APP.format(url=real_redis.url, token=SCRAPE_TOKEN))
    port = free_port()
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "redisapp:app", "--app-dir", str(tmp_path),
           "--port", str(port), "--log-level", "warning"]
    log = tmp_path / "serve.log"
    proc = start_until_ready(cmd, port, tmp_path, log)
    base = f"http://127.0.0.1:{port}"
    resp = redis.Redis(port=port, protocol=3, socket_timeout=10)
    try:
        for _ in range(3):
            assert get(base + "/visit")[0:3:2] == (200, b"seen")
        assert resp.get("visits") == b"seen"                     # RESP on the same port, the same data

        real_redis.stop()
        for _ in range(4):
            status, headers, body = get(base + "/visit")
            assert status == 503, (status, body)
            assert b"Traceback" not in body and b"File \"" not in body and b"redis://" not in body
        try:
            resp.get("visits")
            raise AssertionError("GET answered while Redis was down")
        except redis.exceptions.ResponseError as exc:
            text = str(exc)
        assert text.startswith(f"get: RedisStorage ({real_redis.url}): get: cannot reach Redis"), text
        assert get(base + "/")[0] == 200                          # what needs no storage keeps serving

        down = scrape(base)
        real_redis.start()                                        # the same port, empty
        assert get(base + "/visit")[0:3:2] == (200, b"seen")
        assert resp.get("visits") == b"seen"
        up = scrape(base)
    finally:
        resp.close()
        stop(proc)

    def calls(s: dict, metric: str, op: str) -> float | None:
        return value(s, metric, plugin="redis", operation=op)

    # 3 visits + 1 RESP GET before, 4 failed visits (each fails at its set) and 1 failed RESP GET while down
    assert calls(down, "covet_pipe_storage_calls_total", "set") == 3 + 4
    assert calls(down, "covet_pipe_storage_errors_total", "set") == 4
    assert calls(down, "covet_pipe_storage_calls_total", "get") == 3 + 1 + 1
    assert calls(down, "covet_pipe_storage_errors_total", "get") == 1
    assert calls(up, "covet_pipe_storage_calls_total", "set") == 3 + 4 + 1
    assert calls(up, "covet_pipe_storage_calls_total", "get") == 3 + 1 + 1 + 2
    assert calls(up, "covet_pipe_storage_errors_total", "get") == 1
    text = log.read_text()
    assert "cannot reach Redis" in text and "answers again" in text   # the operator's log says both


WORKERS_APP = """\
import os

from covet_pipe import MiddlewarePlugin, PluginManager, Response, wrap
from covet_pipe.builtin import RedisStorage

class Shared(MiddlewarePlugin):
    name = "shared"
    version = "1.0.0"
    dependencies = ["redis"]

    async def initialize(self, ctx):
        self.store = ctx.get_service("redis")

    async def process_request(self, request, ctx):
        pid = [("x-pid", str(os.getpid()))]
        if request.path.startswith("/set/"):
            await self.store.set("shared", request.path[5:].encode(), ttl=60)
            return Response(200, pid, b"set")
        if request.path == "/get":
            return Response(200, pid, await self.store.get("shared") or b"-")
        return None

manager = PluginManager()
manager.register(RedisStorage({url!r}))
manager.register(Shared())

async def hello(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"hello"}})

app = wrap(hello, manager)
"""


def test_what_one_worker_stores_another_worker_reads(tmp_path: Path, real_redis) -> None:
    (tmp_path / "workersapp.py").write_text(WORKERS_APP.format(url=real_redis.url))
    port = free_port()
    cmd = [sys.executable, "-m", "covet_pipe.cli", "serve", "workersapp:app", "--app-dir", str(tmp_path),
           "--port", str(port), "--log-level", "warning", "--workers", "2"]
    proc = start_until_ready(cmd, port, tmp_path, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        status, headers, _ = get(base + "/set/from-one-worker")
        assert status == 200
        writer = headers["x-pid"]
        readers: dict[str, bytes] = {}
        deadline = time.monotonic() + 30
        for _ in range(300):                       # new connections until the other worker answers
            status, headers, body = get(base + "/get")
            assert status == 200
            readers[headers["x-pid"]] = body
            if len(readers) == 2 or time.monotonic() > deadline:
                break
    finally:
        stop(proc)
    others = {pid: body for pid, body in readers.items() if pid != writer}
    assert others, f"only worker {writer} answered in 300 requests"
    assert set(others.values()) == {b"from-one-worker"}     # the other worker reads what the first stored
    assert readers.get(writer, b"from-one-worker") == b"from-one-worker"
