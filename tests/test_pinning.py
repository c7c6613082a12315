"""Content-hash pins on plugin files (``PluginConfig.plugin_hashes``): checked before the file's code runs.

A file whose hash is not the pinned one is refused as any file that fails to load is: its stand-in answers
503 in its place (fail closed), unless the operator's failure policy for it is ``open``; the other plugins
serve. (Pins on installed packages: tests/test_plugin_packages.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from covet_pipe import PluginConfig, PluginManager, wrap
from covet_pipe.cli import main
from covet_pipe.errors import ConfigError
from covet_pipe.pinning import path_hash
from tests._helpers import echo_app

PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class {cls}(MiddlewarePlugin):
    name = "{name}"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.set("x-{name}", "{value}")

plugin = {cls}()
'''


def _write(folder: Path, name: str, value: str = "on") -> Path:
    path = folder / f"{name}.py"
    path.write_text(PLUGIN.format(cls=name.capitalize(), name=name, value=value))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    _write(plugins, "guard")
    _write(plugins, "other")
    return plugins


async def _get(serve: Any, config: PluginConfig) -> tuple[httpx.Response, PluginManager]:
    manager = PluginManager(config)
    await manager.load_plugins()
    with serve(wrap(echo_app, manager)) as s:
        async with httpx.AsyncClient(base_url=s.url, timeout=10) as client:
            return await client.get("/"), manager


def test_the_hash_to_pin_is_printed_and_follows_the_file_and_its_manifest(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    guard = folder / "guard.py"
    assert main(["plugins", "--hash", str(guard)]) == 0
    printed = capsys.readouterr().out.split()[0]
    assert printed == path_hash(guard) and printed.startswith("sha256:") and len(printed) == 71
    (folder / "guard.covet-plugin.toml").write_text("priority = 5\n")     # the manifest is part of it
    with_manifest = path_hash(guard)
    assert with_manifest != printed
    _write(folder, "guard", value="changed")
    assert path_hash(guard) not in (printed, with_manifest)
    assert main(["plugins", "--hash", str(folder / "missing.py")]) == 2


async def test_a_pinned_file_loads_when_its_hash_matches(folder: Path, serve: Any) -> None:
    pins = {"guard": path_hash(folder / "guard.py")}
    answer, manager = await _get(serve, PluginConfig(plugin_paths=[str(folder)], entry_points=False,
                                                     plugin_hashes=pins))
    assert (answer.status_code, answer.headers.get("x-guard"), answer.headers.get("x-other")) == (200, "on", "on")
    await manager.shutdown_all()


async def test_a_changed_pinned_file_is_refused_and_fails_closed(folder: Path, serve: Any) -> None:
    pinned = path_hash(folder / "guard.py")
    _write(folder, "guard", value="tampered")
    actual = path_hash(folder / "guard.py")
    config = PluginConfig(plugin_paths=[str(folder)], entry_points=False, plugin_hashes={"guard": pinned})
    answer, manager = await _get(serve, config)
    # its stand-in holds its place: a guard that cannot be trusted is not skipped
    assert answer.status_code == 503 and answer.headers.get("x-guard") is None
    health = await manager.get_health_status()
    why = str(health["plugins"]["guard"])
    assert f"its content hash is {actual}, but plugin_hashes pins 'guard' to {pinned}; it was not loaded" in why
    assert f"covet-pipe serve --pin guard={actual}" in why
    await manager.shutdown_all()


async def test_a_changed_pinned_file_with_failure_policy_open_is_left_out(folder: Path, serve: Any) -> None:
    pinned = path_hash(folder / "guard.py")
    _write(folder, "guard", value="tampered")
    config = PluginConfig(plugin_paths=[str(folder)], entry_points=False, plugin_hashes={str(folder / "guard.py"): pinned},
                          failure_policies={"guard": "open"})
    answer, manager = await _get(serve, config)
    assert (answer.status_code, answer.headers.get("x-guard"), answer.headers.get("x-other")) == (200, None, "on")
    await manager.shutdown_all()


@pytest.mark.parametrize("pins", [{"guard": "md5:abc"}, {"guard": "sha256:" + "A" * 64}, {"guard": 1}, ["guard"]])
def test_a_malformed_pin_is_refused_with_its_name(pins: Any) -> None:
    with pytest.raises(ConfigError, match="plugin_hashes") as caught:
        PluginConfig(plugin_hashes=pins)
    assert "sha256:" in str(caught.value)
