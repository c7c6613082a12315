"""The Listener's discovery of installed plugin packages (what ``covet-pipe serve`` does), in this process.

An installed-looking distribution (``NAME.dist-info`` with an entry point, its module beside it) in a folder
put on ``sys.path``, which importlib.metadata reads as it reads site-packages; a real Listener on
127.0.0.1 and a real client. (The same from a pip-installed wheel: tests/test_plugin_packages.py.)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from covet_pipe import PluginConfig, PluginManager
from covet_pipe.server.config import ServeConfig
from covet_pipe.server.listener import Listener
from tests._helpers import echo_app

MODULE = '''
from covet_pipe import MiddlewarePlugin

LOADS = []


class Demo(MiddlewarePlugin):
    name = "demo"
    version = "1.0.0"

    def __init__(self):
        LOADS.append(1)

    def process_response(self, response, ctx):
        response.headers.set("x-demo", str(len(LOADS)))
'''


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    info = site / "covet_pipe_demo-1.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: covet-pipe-demo\nVersion: 1.0.0\n"
                                   "Requires-Dist: covet-pipe>=0.1\n")
    (info / "entry_points.txt").write_text("[covet_pipe.plugins]\ndemo = covet_pipe_demo:Demo\n")
    (site / "covet_pipe_demo").mkdir()
    (site / "covet_pipe_demo" / "__init__.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("covet_pipe_demo", None)


async def _get(manager: PluginManager, plugin_dirs: list[str] | None) -> httpx.Response:
    listener = Listener(echo_app, manager, ServeConfig(port=0, loop="asyncio", lifespan="off"),
                        plugin_dirs=plugin_dirs)
    await listener.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(f"http://127.0.0.1:{listener.port}/")
    finally:
        await listener.shutdown()


async def test_a_plugin_folder_list_even_empty_discovers_the_installed_packages(installed: Path) -> None:
    answer = await _get(PluginManager(PluginConfig()), [])
    assert (answer.status_code, answer.headers.get("x-demo")) == (200, "1")


@pytest.mark.parametrize("dirs, config", [(None, {}), ([], {"entry_points": False}),
                                           ([], {"auto_resolve_dependencies": True})])
async def test_no_list_or_entry_points_off_discovers_nothing(installed: Path, dirs: list[str] | None,
                                                             config: dict[str, Any]) -> None:
    answer = await _get(PluginManager(PluginConfig(**config)), dirs)
    assert (answer.status_code, answer.headers.get("x-demo")) == (200, None)


async def test_a_manager_that_discovered_already_is_not_loaded_twice(installed: Path) -> None:
    manager = PluginManager(PluginConfig())
    await manager.load_plugins()            # an app's, at import
    answer = await _get(manager, [])
    assert (answer.status_code, answer.headers.get("x-demo")) == (200, "1")    # one instance, made once
    assert [p["name"] for p in manager.list_plugins()] == ["demo"]
