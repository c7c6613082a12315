"""``GET /_plugins/events`` through a real uvicorn: a ``retry:`` line, then a JSON snapshot a second.

The stream ends when the client leaves (no stream, generator or task is left behind on the
server's loop) and when the session it was opened with ends; a snapshot carries the chain per
protocol, and what the manager keeps of its history when it keeps any.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from covet_pipe import PluginConfig, PluginManager, admin_app
from covet_pipe.admin import events
from covet_pipe.admin.events import snapshot
from tests._process import free_port, start_until_ready, stop

TOKEN = "t0ken-for-the-dashboard-events-tests-4567"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

PLUGINS = {
    "gate.py": '''
        from covet_pipe import MiddlewarePlugin

        class Gate(MiddlewarePlugin):
            name = "gate"
            version = "0.3.1"
            priority = 10
            protocols = ("http", "websocket")

            def process_request(self, request, ctx):
                return None

        plugin = Gate()
        ''',
    "stamp.py": '''
        from covet_pipe import MiddlewarePlugin

        class Stamp(MiddlewarePlugin):
            name = "stamp"
            version = "1.0.0"
            priority = 20

            def process_response(self, response, ctx):
                response.headers.set("x-stamp", "1")

        plugin = Stamp()
        ''',
    "everywhere.py": '''
        from covet_pipe import MiddlewarePlugin

        class Everywhere(MiddlewarePlugin):
            name = "everywhere"
            version = "2.0.0"
            priority = 30
            protocols = ("*",)

            def process_request(self, request, ctx):
                return None

        plugin = Everywhere()
        ''',
}


def _folder(tmp_path: Path) -> Path:
    for name, text in PLUGINS.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


class Server(NamedTuple):
    url: str
    loop: asyncio.AbstractEventLoop


@pytest.fixture
def served(serve: Any, tmp_path: Path) -> Iterator[Server]:
    manager = PluginManager(PluginConfig(plugin_paths=[str(_folder(tmp_path))]))
    with serve(admin_app(manager, token=TOKEN)) as s:
        asyncio.run_coroutine_threadsafe(_start(manager), s.loop).result(30)
        try:
            yield Server(s.url, s.loop)
        finally:
            asyncio.run_coroutine_threadsafe(manager.shutdown_all(), s.loop).result(30)


async def _start(manager: PluginManager) -> None:
    await manager.load_plugins()
    await manager.initialize_all()


def _read_events(lines: Iterator[str], count: int) -> list[dict[str, str]]:
    """The next *count* events of an SSE stream, each as its fields (``data`` lines joined)."""
    out: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                out.append(event)
                event = {}
                if len(out) == count:
                    return out
            continue
        field, _, value = line.partition(":")
        event[field] = event.get(field, "") + value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {len(out)} events: {out}")


def _tasks(loop: asyncio.AbstractEventLoop) -> int:
    async def count() -> int:
        return len(asyncio.all_tasks()) - 1         # not this one
    return asyncio.run_coroutine_threadsafe(count(), loop).result(10)


def test_the_stream_sends_retry_then_a_snapshot_a_second(served: Server) -> None:
    with httpx.stream("GET", served.url + "/_plugins/events", headers=BEARER, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        first, one, two = _read_events(r.iter_lines(), 3)
    assert first == {"retry": str(events.RETRY_MS)}
    a, b = json.loads(one["data"]), json.loads(two["data"])
    assert set(a) == {"at", "plugins", "chain", "health", "reloads", "errors", "reload_counts"}
    assert 0.8 <= b["at"] - a["at"] <= 3.0
    assert [p["name"] for p in a["plugins"]] == ["gate", "stamp", "everywhere"]
    assert [e["name"] for e in a["chain"]["middleware"]] == ["gate", "stamp", "everywhere"]
    assert a["chain"]["by_protocol"] == {"http": ["gate", "stamp", "everywhere"],
                                         "websocket": ["gate", "everywhere"]}
    assert a["health"]["status"] == "ok" and a["health"]["plugins"]["stamp"]["state"] == "active"


def test_a_client_that_leaves_closes_its_stream_and_leaves_no_task(served: Server) -> None:
    before = _tasks(served.loop)
    with httpx.stream("GET", served.url + "/_plugins/events", headers=BEARER, timeout=10) as r:
        lines = r.iter_lines()          # held: a dropped line iterator closes the connection
        _read_events(lines, 2)
        assert events.open_streams == 1 and _tasks(served.loop) > before
    deadline = time.monotonic() + 10
    while (events.open_streams, _tasks(served.loop)) != (0, before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (events.open_streams, _tasks(served.loop)) == (0, before)


def test_the_stream_ends_when_its_session_ends(served: Server) -> None:
    opened = httpx.post(served.url + "/_plugins/session", headers=BEARER, timeout=10)
    cookie = {"Cookie": opened.headers["set-cookie"].split(";", 1)[0]}
    with httpx.stream("GET", served.url + "/_plugins/events", headers=cookie, timeout=10) as r:
        lines = r.iter_lines()
        _read_events(lines, 2)
        closed = httpx.delete(served.url + "/_plugins/session", headers={**cookie, "X-Covet-Pipe": "1"}, timeout=10)
        assert closed.json()["closed"] is True
        rest = [line for line in lines]           # the server ends the stream within a tick or two
    assert "event: session-ended" in rest
    assert httpx.get(served.url + "/_plugins/events", headers=cookie, timeout=10).status_code == 401


def test_the_stream_needs_credentials(served: Server) -> None:
    r = httpx.get(served.url + "/_plugins/events", timeout=10)
    assert (r.status_code, r.json()) == (401, {"error": "unauthorized"})


class _Reload(NamedTuple):
    name: str
    old_version: str
    new_version: str
    ok: bool
    error: str | None
    duration_s: float
    at: float


class _HistoryManager(PluginManager):
    """A manager that keeps a reload history, as ``reload_history()`` on the manager reads it."""

    def reload_history(self) -> list[_Reload]:
        return [_Reload("stamp", "1.0.0", "1.1.0", True, None, 0.012, 1700000000.0)]


def test_a_snapshot_carries_the_history_the_manager_keeps(tmp_path: Path) -> None:
    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        keeping = _HistoryManager(PluginConfig(plugin_paths=[str(_folder(tmp_path))]))
        await _start(keeping)
        try:
            return await snapshot(keeping), await snapshot(PluginManager())
        finally:
            await keeping.shutdown_all()

    kept, bare = asyncio.run(go())
    assert kept["reloads"] == [{"name": "stamp", "old_version": "1.0.0", "new_version": "1.1.0", "ok": True,
                                "error": None, "duration_s": 0.012, "at": 1700000000.0}]
    assert json.loads(json.dumps(kept, default=str))["reloads"] == kept["reloads"]
    # a manager that keeps no history says so with None, not with an empty list
    for key, reader in events.HISTORY.items():
        assert (bare[key] is None) == (getattr(PluginManager, reader, None) is None), key
    assert bare["plugins"] == [] and bare["chain"]["by_protocol"] == {"http": [], "websocket": []}


SERVED = """\
from covet_pipe import PluginManager, admin_app

app = admin_app(PluginManager(), token=%r)
""" % TOKEN


def test_an_open_stream_holds_a_graceful_shutdown_up_by_max_stream_at_most(tmp_path: Path) -> None:
    # uvicorn waits for the responses in flight before it exits: the stream's own end bounds the wait
    (tmp_path / "served.py").write_text(SERVED)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "served:app", "--host", "127.0.0.1",
                              "--port", str(port)], port, tmp_path, tmp_path / "server.log")
    received: list[str] = []
    try:
        with httpx.stream("GET", f"http://127.0.0.1:{port}/_plugins/events", headers=BEARER, timeout=30) as r:
            lines = r.iter_lines()
            _read_events(lines, 2)
            proc.send_signal(signal.SIGTERM)
            asked = time.monotonic()
            reader = threading.Thread(target=lambda: received.extend(lines), daemon=True)
            reader.start()              # the client stays connected, reading, until the server ends the stream
            try:
                code: int | None = proc.wait(30)
            except subprocess.TimeoutExpired:
                code = None             # still waiting for the stream: the assertion below says so
            took = time.monotonic() - asked
            reader.join(10)
    finally:
        stop(proc)
    assert code in (0, -signal.SIGTERM), f"uvicorn still ran {time.monotonic() - asked:.0f} s after SIGTERM"
    assert took <= events.MAX_STREAM + 5
    assert any(line.startswith("data: ") for line in received)          # it went on serving until then
    assert "Traceback" not in (tmp_path / "server.log").read_text()


class _FailingManager(PluginManager):
    """A manager whose history reader raises (as a broken one could)."""

    def recent_errors(self) -> list[Any]:
        raise RuntimeError("secret detail at /srv/internal")


def test_a_snapshot_that_raises_ends_the_stream_with_no_detail_to_the_client(
        serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    with serve(admin_app(_FailingManager(), token=TOKEN)) as s:
        with httpx.stream("GET", s.url + "/_plugins/events", headers=BEARER, timeout=10) as r:
            received = list(r.iter_lines())             # the server ends the stream itself
        snap = httpx.get(s.url + "/_plugins/dashboard/snapshot", headers=BEARER, timeout=10)
    assert received[:2] == [f"retry: {events.RETRY_MS}", ""]
    assert received[2:4] == ["event: snapshot-failed", 'data: {"error": "internal error"}']
    assert (snap.status_code, snap.json()) == (500, {"error": "internal error"})
    assert "secret detail" not in "\n".join(received) + snap.text
    assert "secret detail at /srv/internal" in caplog.text


class _CountingManager(PluginManager):
    """A manager that counts the health reads a snapshot makes."""

    reads = 0

    async def get_health_status(self) -> dict[str, Any]:
        self.reads += 1
        return await super().get_health_status()


def test_the_streams_over_one_manager_share_its_snapshot() -> None:
    async def go() -> tuple[bytes, bytes, bytes, int]:
        manager = _CountingManager()
        first = await events.shared_event(manager)
        second = await events.shared_event(manager)            # another stream in the same tick
        await asyncio.sleep(events.INTERVAL / 2 + 0.05)
        third = await events.shared_event(manager)              # the next tick
        return first, second, third, manager.reads

    first, second, third, reads = asyncio.run(go())
    assert second is first and third is not first and reads == 2
    assert first.startswith(b"data: {") and first.endswith(b"\n\n")


def test_past_max_streams_a_new_stream_is_503(served: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events, "MAX_STREAMS", 1)
    with httpx.stream("GET", served.url + "/_plugins/events", headers=BEARER, timeout=10) as r:
        lines = r.iter_lines()
        _read_events(lines, 1)
        refused = httpx.get(served.url + "/_plugins/events", headers=BEARER, timeout=10)
        assert refused.status_code == 503 and "1 event streams are open" in refused.json()["error"]
    deadline = time.monotonic() + 10
    while events.open_streams and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.stream("GET", served.url + "/_plugins/events", headers=BEARER, timeout=10) as r:
        assert r.status_code == 200
