"""The worker's flush: deltas into the mmap files, a plugin whose counts start again, two managers in a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from covet_pipe.metrics import multiprocess
from tests._helpers import asgi_call, echo_app


class Counted(MiddlewarePlugin):
    name = "counted"
    version = "1.0.0"

    def process_request(self, request, ctx):
        return None


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    multiprocess.prepare()
    try:
        yield tmp_path
    finally:
        multiprocess.finish()


def _calls(manager: PluginManager) -> float:
    text = multiprocess.scrape(manager).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "covet_pipe_plugin_calls_total" and s.labels["plugin"] == "counted":
                return s.value
    raise AssertionError(f"no calls of 'counted' in:\n{text}")


async def _manager(requests: int) -> tuple[PluginManager, object]:
    manager = PluginManager()
    manager.register(Counted())
    app = wrap(echo_app, manager)
    await manager.initialize_all()
    for _ in range(requests):
        await asgi_call(app, "/")
    return manager, app


async def test_flushes_add_what_grew_and_a_fresh_start_counts_from_zero(files: Path) -> None:
    manager, app = await _manager(10)
    flusher = multiprocess.flusher(manager)
    assert flusher is not None
    flusher.flush()
    flusher.flush()                                  # nothing grew: nothing added
    assert _calls(manager) == 10
    for _ in range(5):
        await asgi_call(app, "/")
    assert _calls(manager) == 15                     # a scrape flushes first
    # the plugin is loaded anew: its counters start at 0 (below the last flush), and count on from there
    await manager.unload_plugin("counted")
    manager.register(Counted())
    await manager.initialize_all()
    for _ in range(3):
        await asgi_call(app, "/")
    assert _calls(manager) == 18
    assert any(p.name.startswith("counter_") for p in files.iterdir())
    await multiprocess.stop(manager)


async def test_two_managers_in_one_process_add_up_and_the_server_is_counted_once(files: Path) -> None:
    first, _ = await _manager(4)
    second, _ = await _manager(6)
    multiprocess.flusher(first)
    assert _calls(second) == 10                      # the same plugin name in both: summed, as on a scrape
    text = multiprocess.scrape(first).decode()
    assert text.count("# TYPE covet_pipe_http_open_connections gauge") == 1
    await multiprocess.stop(first)
    await multiprocess.stop(second)
    assert multiprocess.flusher(first) is not None   # a manager may come back
    await multiprocess.stop(first)
