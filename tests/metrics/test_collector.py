"""The scrape's text against prometheus-client's own rendering, the hook histogram, the families' docs."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from covet_pipe import MiddlewarePlugin, PluginManager, Response, wrap
from covet_pipe.builtin import PrometheusMetrics, PrometheusMetricsPlugin
from covet_pipe.metrics import FAMILIES, multiprocess
from covet_pipe.metrics.collector import CONTENT_TYPE, CoreCollector, scrape
from tests._helpers import asgi_call, echo_app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
SAMPLE_EVERY = 64       #: the core times the hooks of one request in this many


class Waits(MiddlewarePlugin):
    name = "waits"
    version = "1.0.0"

    async def process_request(self, request, ctx):
        await asyncio.sleep(0.002)
        if request.path == "/teapot":
            return Response(418, [], b"")
        if request.path == "/gone":
            return Response(503, [], b"")
        return None


class Quick(MiddlewarePlugin):
    name = "quick"
    version = "1.0.0"
    protocols = ["http", "websocket"]

    def process_request(self, request, ctx):
        return None


def _parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _served(n: int) -> PluginManager:
    manager = PluginManager()
    manager.register(Waits())
    manager.register(Quick())
    app = wrap(echo_app, manager)
    await manager.initialize_all()
    for i in range(n):
        path = "/teapot" if i % 10 == 0 else "/gone" if i % 10 == 1 else "/"
        await asgi_call(app, path)
    return manager


async def test_the_scrape_says_what_prometheus_client_would_say_of_the_same_collector() -> None:
    manager = await _served(SAMPLE_EVERY * 3)
    content_type, body = scrape(manager)
    assert content_type == CONTENT_TYPE and content_type.startswith("text/plain; version=0.0.4")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoreCollector(manager))
    ours, theirs = _parsed(body.decode()), _parsed(generate_latest(registry).decode())
    # the server's counters are this process's (others tests may have served): compare the plugins
    plugin_keys = {k for k in theirs if k[0].startswith("covet_pipe_plugin")}
    assert plugin_keys and {k: ours[k] for k in plugin_keys} == {k: theirs[k] for k in plugin_keys}
    name = Waits.name
    assert ours[("covet_pipe_plugin_calls_total", (("plugin", name), ("protocol", "http")))] == SAMPLE_EVERY * 3
    assert ours[("covet_pipe_plugin_short_circuits_total",
                 (("plugin", name), ("protocol", "http"), ("status_class", "4xx")))] == 20
    assert ours[("covet_pipe_plugin_short_circuits_total",
                 (("plugin", name), ("protocol", "http"), ("status_class", "5xx")))] == 20
    # a plugin on two protocols has a series for each; these requests were all http
    assert ours[("covet_pipe_plugin_calls_total", (("plugin", "quick"), ("protocol", "http")))] == \
        SAMPLE_EVERY * 3      # it runs first ("quick" < "waits")
    assert ours[("covet_pipe_plugin_calls_total", (("plugin", "quick"), ("protocol", "websocket")))] == 0


async def test_the_hook_histogram_holds_the_samples_and_gives_p50_and_p99() -> None:
    manager = await _served(SAMPLE_EVERY * 4)
    stats = {p["name"]: p for p in manager.list_plugins()}[Waits.name]["stats"]
    entry = next(e for e in manager.chain.current.entries if e.name == Waits.name)
    bounds, counts = entry.stats.hook_histogram()
    assert len(bounds) == len(counts) == 24 and bounds[-1] == float("inf")
    assert list(bounds[:-1]) == sorted(bounds[:-1]) and bounds[0] == pytest.approx(1.024e-6)
    assert sum(counts) == entry.stats.sampled_calls >= 3
    # every sample waited 2 ms: all of them in the bucket 1.05-2.10 ms or the next (a slow machine)
    slow = {i for i, n in enumerate(counts) if n}
    assert slow <= {11, 12, 13}, (slow, counts)
    assert 1000 <= stats["p50_hook_us"] <= 8400 and stats["p50_hook_us"] <= stats["p99_hook_us"] <= 8400
    quick = {p["name"]: p for p in manager.list_plugins()}["quick"]["stats"]
    assert quick["p50_hook_us"] is not None and quick["p50_hook_us"] < stats["p50_hook_us"]


def test_no_samples_no_percentiles() -> None:
    from covet_pipe._core import PluginStats
    s = PluginStats()
    assert (s.as_dict()["p50_hook_us"], s.as_dict()["p99_hook_us"]) == (None, None)
    assert s.hook_quantile_us(0.5) is None and sum(s.hook_histogram()[1]) == 0


def test_the_alias_and_the_path_check() -> None:
    assert PrometheusMetricsPlugin is PrometheusMetrics
    with pytest.raises(ValueError, match="path"):
        PrometheusMetrics(path="metrics")
    with pytest.raises(ValueError, match="16 characters"):
        PrometheusMetrics(token="short")


async def test_without_a_manager_it_says_how_to_give_one() -> None:
    manager = PluginManager()
    manager.register(PrometheusMetrics())
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["plugins"]["prometheus_metrics"]["state"] == "failed"
    assert "PrometheusMetrics(manager)" in health["plugins"]["prometheus_metrics"]["error"]


def test_prepare_wipes_a_given_directory_and_finish_leaves_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"stale")
    (tmp_path / "keep.txt").write_text("not ours")
    assert multiprocess.prepare() == str(tmp_path) and multiprocess.enabled()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    multiprocess.finish()
    assert not multiprocess.enabled() and tmp_path.is_dir()


def test_prepare_makes_a_directory_and_finish_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path = multiprocess.prepare()
    try:
        assert os.path.isdir(path) and os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
    finally:
        multiprocess.finish()
    assert not os.path.exists(path) and "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_the_docs_name_every_metric_with_its_type_and_labels() -> None:
    text = DOCS.read_text()
    for family in FAMILIES:
        shown = family.name + ("_total" if family.kind == "counter" else "")
        row = re.search(rf"^\| `{shown}` \| (\w+) \| ([^|]*) \|", text, re.M)
        assert row, f"docs/metrics.md has no row for {shown}"
        assert row.group(1) == family.kind, shown
        assert row.group(2).strip() == (", ".join(f"`{label}`" for label in family.labels) or "—"), shown
