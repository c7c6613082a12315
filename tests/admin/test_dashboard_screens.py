"""The dashboard at 1280x800 and at a phone's 390x844 in headless Chromium: no horizontal scroll of
the page, every plugin and its reload button on screen; the screenshots are kept as test artefacts
in build/screenshots/ (docs/img/ holds a copy of each for docs/admin.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.admin._browser import ORDER, SCREENSHOTS, Tab, browser, server

__all__ = ["browser", "server"]      # fixtures, used by name

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 800), ("phone", 390, 844)],
                         ids=["desktop", "phone"])
def test_the_dashboard_fits_the_screen(browser: Any, server: Any, name: str, width: int, height: int) -> None:
    tab = Tab(browser, server[0], width, height)
    try:
        page = tab.live()
        scroll_width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll_width <= inner, f"the page scrolls sideways at {width} px: {scroll_width} px wide"
        assert page.locator("#plugins tbody tr td.name").all_text_contents() == ORDER
        for plugin in ORDER:
            box = tab.row(plugin).locator("button").bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= inner, plugin
        if name == "desktop":       # the plugin table fits its box: nothing to scroll sideways there either
            assert page.evaluate("(b => b.scrollWidth <= b.clientWidth)(document.querySelector('#plugins').parentElement)")
        # at phone width the table's header row gives way to labelled cards
        assert page.locator("#plugins thead").is_visible() == (name == "desktop")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"dashboard-{name}.png"
        page.screenshot(path=str(path), full_page=name == "phone")
        assert path.stat().st_size > 10_000
        assert tab.errors == []
    finally:
        tab.close()
