"""The dashboard in headless Chromium against a real uvicorn serving the admin app beside the app.

It loads with no console error, shows the plugins in chain order, follows a reload made through the
API within seconds, shows a failed plugin as failed, and runs its reload button (a 409 shown as
one); the token form opens a session and the page keeps no token; a cookie call that changes
state without ``X-Covet-Pipe: 1`` is 403; when the event stream fails the page polls.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.admin._browser import ORDER, TOKEN, Tab, browser, call, server, tab, write_plugin

__all__ = ["browser", "server", "tab"]      # fixtures, used by name

pytestmark = pytest.mark.timeout(180)


def _expect() -> Any:
    from playwright.sync_api import expect
    return expect


def test_it_loads_with_no_console_error_and_shows_the_plugins_in_chain_order(tab: Tab) -> None:
    page = tab.live()
    names = page.locator("#plugins tbody tr td.name").all_text_contents()
    assert names == ORDER
    http = page.locator(".chain", has=page.locator("h3", has_text="http")).first
    assert [t.split()[0] for t in http.locator("li").all_text_contents()] == ORDER[:3]
    websocket = page.locator(".chain", has=page.locator("h3", has_text="websocket"))
    assert [t.split()[0] for t in websocket.locator("li").all_text_contents()] == ["gate"]
    greet = tab.row("greet")
    assert greet.locator("td[data-label=sandboxed]").text_content() == "yes"
    assert greet.locator("td[data-label=helpers]").text_content() == "1/1"
    assert tab.row("gate").locator("td[data-label=sandboxed]").text_content() == "no"
    assert int(tab.row("gate").locator("td[data-label=calls]").text_content() or "0") >= 5
    # the hook-time percentiles where the stats have them, a dash where they do not
    for cell in ("p50 hook", "p99 hook"):
        assert re.fullmatch(r"\u2014|[0-9.]+ (\u00b5s|ms)", tab.row("gate").locator(f"td[data-label='{cell}']").text_content() or "")
    # the token went into the session and nowhere else; the cookie is out of the script's reach
    kept = page.evaluate("[localStorage.length, sessionStorage.length, document.cookie, "
                         "document.getElementById('token').value]")
    assert kept == [0, 0, "", ""]
    cookies = {c["name"]: c for c in tab.context.cookies()}
    assert cookies["covet_pipe_admin"]["httpOnly"] and cookies["covet_pipe_admin"]["sameSite"] == "Strict"
    assert tab.errors == []


def test_a_failed_plugin_shows_in_its_failed_state(tab: Tab) -> None:
    tab.live()
    broken = tab.row("broken")
    assert broken.get_attribute("data-state") == "failed" and "failed" in (broken.get_attribute("class") or "")
    assert broken.locator("td.state .state-failed").text_content() == "failed"
    assert "no database at db.internal:5432" in (broken.locator("td.state .why").text_content() or "")
    assert tab.page.locator("#overall").text_content() == "degraded"
    assert tab.errors == []


def test_a_reload_made_through_the_api_shows_within_seconds(tab: Tab, server: tuple[str, Path]) -> None:
    base, folder = server
    tab.live()
    before = tab.row("stamp").locator("td.version").text_content()
    new = f"3.{int(time.time()) % 1000}.0"
    write_plugin(folder, "stamp", new)
    assert call(base, "POST", "/_plugins/stamp/reload") == (200, {"reloaded": "stamp", "version": new})
    _expect()(tab.row("stamp").locator("td.version")).to_have_text(new, timeout=5_000)
    assert before != new
    if call(base, "GET", "/_plugins/dashboard/snapshot")[1]["reloads"] is not None:   # the manager keeps them
        _expect()(tab.page.locator("#reloads tbody tr", has_text=new).first).to_be_visible(timeout=5_000)
    assert tab.errors == []


def test_the_reload_button_reloads_and_shows_a_409_when_the_new_version_fails(
        tab: Tab, server: tuple[str, Path]) -> None:
    base, folder = server
    page = tab.live()
    write_plugin(folder, "stamp", "4.0.0")
    tab.row("stamp").locator("button").click()
    _expect()(page.locator("#reload-result")).to_have_text("reloaded stamp: now 4.0.0")
    _expect()(tab.row("stamp").locator("td.version")).to_have_text("4.0.0", timeout=5_000)
    (folder / "plugins" / "stamp.py").write_text("this is not python (\n")
    try:
        tab.row("stamp").locator("button").click()
        result = page.locator("#reload-result")
        _expect()(result).to_have_attribute("data-status", "409")
        assert (result.text_content() or "").startswith("409: reloading 'stamp' failed")
        assert "the old version keeps serving" in (result.text_content() or "")
        assert tab.row("stamp").locator("td.version").text_content() == "4.0.0"
        with urllib.request.urlopen(base + "/", timeout=15) as r:
            assert r.headers["x-stamp"] == "4.0.0"
    finally:
        write_plugin(folder, "stamp", "4.0.0")
    # the browser reports the 409 response itself, and nothing else went wrong
    assert [e for e in tab.errors if "409" not in e] == []


def test_a_cookie_call_that_changes_state_without_x_covet_pipe_is_403(tab: Tab) -> None:
    tab.live()
    assert tab.fetch("GET", "/_plugins") == 200                        # the cookie reads
    assert tab.fetch("POST", "/_plugins/stamp/reload") == 403
    assert tab.fetch("POST", "/_plugins/stamp/reload", {"X-Covet-Pipe": "1"}) == 200


def test_a_page_without_a_session_shows_the_token_form_and_refuses_a_wrong_token(tab: Tab) -> None:
    page = tab.open()
    _expect()(page.locator("#login")).to_be_visible()
    assert page.locator("#board").is_hidden()
    assert tab.fetch("GET", "/_plugins") == 401
    tab.login(TOKEN[::-1])
    _expect()(page.locator("#login-error")).to_have_text("that token was refused (403)")
    assert page.locator("#board").is_hidden() and tab.context.cookies() == []
    assert [e for e in tab.errors if "401" not in e and "403" not in e] == []


def test_logging_out_ends_the_session(tab: Tab) -> None:
    page = tab.live()
    page.click("#logout")
    _expect()(page.locator("#login")).to_be_visible()
    assert tab.fetch("GET", "/_plugins") == 401
    page.reload()
    _expect()(page.locator("#login")).to_be_visible()       # the probe says: no session
    assert [e for e in tab.errors if "401" not in e] == []


def test_the_page_polls_when_the_event_stream_fails(tab: Tab, server: tuple[str, Path]) -> None:
    base, folder = server
    tab.context.route("**/_plugins/events", lambda route: route.fulfill(status=503, body=""))
    page = tab.login()
    _expect()(page.locator("#live")).to_have_text("polling", timeout=10_000)
    new = f"5.{int(time.time()) % 1000}.0"
    write_plugin(folder, "stamp", new)
    assert call(base, "POST", "/_plugins/stamp/reload")[0] == 200
    _expect()(tab.row("stamp").locator("td.version")).to_have_text(new, timeout=6_000)
    assert [e for e in tab.errors if "503" not in e and "EventSource" not in e] == []


def test_a_killed_helper_shows_as_a_restart(tab: Tab, server: tuple[str, Path]) -> None:
    base = server[0]
    tab.live()
    sandbox = call(base, "GET", "/_plugins/health")[1]["plugins"]["greet"]["sandbox"]
    restarts = sandbox["restarts"]
    os.kill(sandbox["helpers"][0]["pid"], signal.SIGKILL)
    _expect()(tab.row("greet").locator("td[data-label=restarts]")).to_have_text(str(restarts + 1), timeout=15_000)
    _expect()(tab.row("greet").locator("td[data-label=helpers]")).to_have_text("1/1", timeout=15_000)
    assert tab.errors == []


def test_a_slow_click_on_reload_survives_the_updates_in_between(tab: Tab, server: tuple[str, Path]) -> None:
    # a person's click takes a while: the rows are updated in place, so the button under the
    # pointer at mouse-down is still the one there at mouse-up, a second and more later
    base, folder = server
    page = tab.live()
    write_plugin(folder, "stamp", "6.0.0")
    box = tab.row("stamp").locator("button").bounding_box()
    assert box is not None
    updated = page.locator("#summary div", has_text="updated").locator("dd")
    at = updated.text_content()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    _expect()(updated).not_to_have_text(at or "", timeout=5_000)        # an update came in between
    page.mouse.up()
    _expect()(page.locator("#reload-result")).to_have_text("reloaded stamp: now 6.0.0")
    assert tab.errors == []
