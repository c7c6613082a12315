"""A native plugin's hooks are timed on the sampled requests, as Python hooks are."""

from __future__ import annotations

import shutil

from covet_pipe import PluginConfig, PluginManager, wrap
from tests._helpers import asgi_call, echo_app

SAMPLE_EVERY = 64


async def test_native_hooks_fill_the_hook_histogram(built, tmp_path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(built["header_rewrite"], folder)
    manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False))
    report = await manager.load_plugins()
    assert report.loaded == ["header_rewrite"], report.failed
    app = wrap(echo_app, manager)
    for _ in range(SAMPLE_EVERY * 2):
        assert (await asgi_call(app, "/")).status == 200
    entry = manager.chain.current.entries[0]
    assert entry.native and entry.stats.calls == SAMPLE_EVERY * 2
    # two timed requests at least; each times the request and the response hook it has
    assert entry.stats.sampled_calls >= 2
    stats = {p["name"]: p for p in manager.list_plugins()}["header_rewrite"]["stats"]
    assert stats["p50_hook_us"] is not None and 0 < stats["p50_hook_us"] < 10_000
    await manager.shutdown_all()
