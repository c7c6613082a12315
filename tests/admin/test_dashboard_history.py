"""The dashboard's reload history, recent errors and reload counts in headless Chromium, from a manager
that keeps them (``reload_history()``, ``recent_errors()``, ``reload_counts()``: newest first), with
a plugin's error text shown as text, never as markup.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
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
    version = "1.1.0"

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "1")

plugin = Stamp()
'''
NOW = time.time()
#: an error text a plugin chose: it must reach the page as text
HOSTILE = '<img src=x onerror="document.title=1">'


class KeepingManager(PluginManager):
    """A manager whose history readers answer as the manager's own do (lists of dicts, newest first)."""

    def reload_history(self) -> list[dict[str, Any]]:
        return [
            {"name": "stamp", "old_version": "1.0.0", "new_version": "1.1.0", "ok": True, "error": None,
             "duration_s": 0.0123, "at": NOW - 5},
            {"name": "stamp", "old_version": "1.0.0", "new_version": None, "ok": False,
             "error": "SyntaxError: '(' was never closed", "duration_s": 0.004, "at": NOW - 60},
        ]

    def recent_errors(self) -> list[dict[str, Any]]:
        return [{"plugin": "stamp", "hook": "process_response", "error": f"ValueError: {HOSTILE}", "at": NOW - 2}]

    def reload_counts(self) -> dict[str, dict[str, int]]:
        return {"stamp": {"ok": 1, "failed": 1}}


@pytest.fixture
def keeping(serve: Any, tmp_path: Path) -> Iterator[str]:
    (tmp_path / "stamp.py").write_text(textwrap.dedent(PLUGIN))
    manager = KeepingManager(PluginConfig(plugin_paths=[str(tmp_path)]))

    async def start() -> None:
        await manager.load_plugins()
        await manager.initialize_all()

    with serve(admin_app(manager, token=TOKEN)) as s:
        asyncio.run_coroutine_threadsafe(start(), s.loop).result(30)
        try:
            yield s.url
        finally:
            asyncio.run_coroutine_threadsafe(manager.shutdown_all(), s.loop).result(30)


def test_the_history_the_manager_keeps_is_shown_newest_first(browser: Any, keeping: str) -> None:
    tab = Tab(browser, keeping)
    try:
        page = tab.live()
        rows = page.locator("#reloads tbody tr")
        assert rows.count() == 2
        newest = [rows.nth(0).locator(f"td[data-label={k}]").text_content() for k in ("plugin", "from", "to", "result")]
        assert newest == ["stamp", "1.0.0", "1.1.0", "ok"]
        assert rows.nth(0).locator("td[data-label=took]").text_content() == "12.3 ms"
        assert rows.nth(1).locator("td[data-label=result]").text_content() == "failed"
        assert rows.nth(1).locator("td[data-label=to]").text_content() == "\u2014"
        assert "was never closed" in (rows.nth(1).locator("td[data-label=error]").text_content() or "")
        error = page.locator("#errors tbody tr")
        assert error.count() == 1 and error.locator("td[data-label=hook]").text_content() == "process_response"
        assert error.locator("td[data-label=error]").text_content() == f"ValueError: {HOSTILE}"
        assert page.locator("#errors img").count() == 0 and page.title() == "covet-pipe dashboard"
        assert tab.row("stamp").locator("td[data-label=reloads]").text_content() == "1 / 1"
        assert page.locator("#reloads-none").is_hidden() and page.locator("#errors-none").is_hidden()
        # what did not change is not drawn again: an operator can select an error's text to copy it
        page.evaluate("getSelection().selectAllChildren(document.querySelector('#errors td[data-label=error]'))")
        updated = page.locator("#summary div", has_text="updated").locator("dd")
        at = updated.text_content()
        from playwright.sync_api import expect
        expect(updated).not_to_have_text(at or "", timeout=5_000)
        assert page.evaluate("getSelection().toString()") == f"ValueError: {HOSTILE}"
        assert tab.errors == []
    finally:
        tab.close()
