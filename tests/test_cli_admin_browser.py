"""The dashboard in headless Chromium through a `covet-pipe serve --workers 2 --admin` supervisor.

The page is served by the supervisor, the token form opens the supervisor's session, the event
stream relays a worker's snapshots, and the Reload button (a cookie call with ``X-Covet-Pipe: 1``)
reaches both workers: every pid serves the new version afterwards. No console error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._process import stop
from tests.admin._browser import Tab, browser
from tests.test_cli_admin import TOKEN, Server, make_folder, write_plugin
from tests.test_cli_admin_workers import _pids_by_version

__all__ = ["browser"]       # the fixture, used by name

pytestmark = pytest.mark.timeout(240)


def test_the_dashboard_through_the_supervisor_reloads_every_worker(browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = Server(make_folder(tmp_path), workers=2)
    tab = Tab(browser, server.url)
    try:
        page = tab.login(TOKEN)
        page.locator("#plugins tbody tr").first.wait_for()
        page.wait_for_function("document.getElementById('live').textContent === 'live'")
        assert page.locator("#plugins tbody tr td.name").all_text_contents() == ["stamp"]
        expect(tab.row("stamp").locator("td.version")).to_have_text("1.0.0")
        assert tab.errors == []
        assert tab.fetch("POST", "/_plugins/stamp/reload") == 403           # the cookie alone
        write_plugin(server.folder, "3.0.0")
        tab.row("stamp").locator("button").click()
        expect(page.locator("#reload-result")).to_have_text("reloaded stamp: now 3.0.0")
        expect(tab.row("stamp").locator("td.version")).to_have_text("3.0.0", timeout=10_000)
        after = _pids_by_version(server.port, 2)
        assert list(after) == ["3.0.0"] and len(after["3.0.0"]) == 2, after
        # the only console error is the 403 this test asked for
        assert len(tab.errors) == 1 and "status of 403" in tab.errors[0], tab.errors
    finally:
        tab.close()
        code = stop(server.proc)
    log = server.log.read_text()
    assert code == 0 and "Traceback" not in log, log
