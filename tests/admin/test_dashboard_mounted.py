"""The dashboard below a mount point (Starlette's ``Mount("/ops", app=admin)``) in headless Chromium:
the page finds its files, events and session under the prefix, and its cookie is scoped to it.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from covet_pipe import PluginConfig, PluginManager, admin_app
from tests.admin._browser import TOKEN, Tab, browser

__all__ = ["browser"]      # a fixture, used by name

pytestmark = pytest.mark.timeout(180)

PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "1.0.0"

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "1")

plugin = Stamp()
'''


@pytest.fixture
def mounted(serve: Any, tmp_path: Path) -> Iterator[str]:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    (tmp_path / "stamp.py").write_text(textwrap.dedent(PLUGIN))
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], hot_reload=True))

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("the app")

    outer = Starlette(routes=[Route("/", home), Mount("/ops", app=admin_app(manager, token=TOKEN))])
    with serve(outer) as s:
        asyncio.run_coroutine_threadsafe(_start(manager), s.loop).result(30)
        try:
            yield s.url
        finally:
            asyncio.run_coroutine_threadsafe(manager.shutdown_all(), s.loop).result(30)


async def _start(manager: PluginManager) -> None:
    await manager.load_plugins()
    await manager.initialize_all()


def test_below_a_mount_the_page_works_and_its_cookie_is_scoped_to_the_prefix(browser: Any, mounted: str) -> None:
    tab = Tab(browser, mounted + "/ops")
    try:
        page = tab.live()
        assert page.locator("#plugins tbody tr td.name").all_text_contents() == ["stamp"]
        (cookie,) = tab.context.cookies()
        assert (cookie["name"], cookie["path"]) == ("covet_pipe_admin", "/ops/_plugins")
        tab.row("stamp").locator("button").click()
        from playwright.sync_api import expect
        expect(page.locator("#reload-result")).to_have_text("reloaded stamp: now 1.0.0")
        assert tab.errors == []
    finally:
        tab.close()
