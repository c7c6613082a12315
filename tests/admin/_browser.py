"""The dashboard's browser tests' parts: a real uvicorn serving the admin app beside the app over a
manager with four plugins (one sandboxed, one whose initialize raises), and Debian's Chromium driven
by Python Playwright (``executable_path``; Playwright's own browser download is not used).

The tests skip only when /usr/bin/chromium is absent and cannot be installed (``make chromium``
installs it; ``make test`` runs that first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin._apps import admin_beside_app
from tests._process import free_port, start_until_ready, stop

CHROMIUM = "/usr/bin/chromium"
#: what PLATFORM.md names for a quiet headless Chromium on this machine kind
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
TOKEN = "t0ken-for-the-dashboard-browser-tests-89ab"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
#: the chain in request order (priority), then the plugin that failed to start (not in the chain)
ORDER = ["gate", "stamp", "greet", "broken"]

_MIDDLEWARE = '''
from covet_pipe import MiddlewarePlugin

class {cls}(MiddlewarePlugin):
    name = "{name}"
    version = "{version}"
    priority = {priority}
{extra}
plugin = {cls}()
'''

PLUGINS = {
    "gate": ("Gate", "0.3.1", 10, '    protocols = ("http", "websocket")\n\n'
             "    def process_request(self, request, ctx):\n        return None\n"),
    "stamp": ("Stamp", "1.0.0", 20, "    def process_response(self, response, ctx):\n"
              '        response.headers.set("x-stamp", self.version)\n'),
    "greet": ("Greet", "1.2.0", 30, "    def process_response(self, response, ctx):\n"
              '        response.headers.set("x-sandboxed", "yes")\n'),
    "broken": ("Broken", "0.9.0", 40, '    failure_policy = "open"\n\n'
               "    async def initialize(self, services):\n"
               '        raise RuntimeError("no database at db.internal:5432")\n\n'
               "    def process_request(self, request, ctx):\n        return None\n"),
}

APP = admin_beside_app(TOKEN)


def write_plugin(folder: Path, name: str, version: str | None = None) -> None:
    cls, default, priority, extra = PLUGINS[name]
    text = _MIDDLEWARE.format(cls=cls, name=name, version=version or default, priority=priority, extra=extra)
    (folder / "plugins" / f"{name}.py").write_text(text)


def chromium() -> str:
    """The path of Debian's chromium, installed with apt when it is missing; else the test skips."""
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True, timeout=900,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is absent and could not be installed (run `make chromium` as root)")
    return CHROMIUM


def call(base: str, method: str, path: str) -> tuple[int, Any]:
    """The admin API with the bearer token, as a script or the CLI calls it."""
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None,
                                 headers=BEARER)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("dashboard")
    (folder / "plugins").mkdir()
    for name in PLUGINS:
        write_plugin(folder, name)
    (folder / "plugins" / "greet.covet-plugin.toml").write_text("sandbox = true\n")
    (folder / "dashapp.py").write_text(APP)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "dashapp:app", "--host", "127.0.0.1",
                              "--port", str(port)], port, folder, folder / "server.log", timeout=60)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(5):                          # some traffic, so the counters are not all zero
            urllib.request.urlopen(base + "/", timeout=15).close()
        yield base, folder
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is in the dev extra: "
                                   "pip install -e '.[dev]'")
    # generous waits for a loaded machine; an assertion about speed ("within 5 s") gives its own
    sync_api.expect.set_options(timeout=15_000)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Tab:
    """A fresh browser context (no cookies) with one page, and what its console said."""

    def __init__(self, browser: Any, base: str, width: int = 1280, height: int = 800) -> None:
        self.base = base
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def open(self) -> Any:
        self.page.goto(self.base + "/_plugins/dashboard")
        return self.page

    def login(self, token: str = TOKEN) -> Any:
        page = self.open()
        page.locator("#login").wait_for(state="visible")
        page.fill("#token", token)
        page.click("#login-form button[type=submit]")
        return page

    def live(self) -> Any:
        page = self.login()
        page.locator("#plugins tbody tr").first.wait_for()
        page.wait_for_function("document.getElementById('live').textContent === 'live'")
        return page

    def row(self, name: str) -> Any:
        return self.page.locator(f'#plugins tbody tr[data-plugin="{name}"]')

    def fetch(self, method: str, path: str, headers: dict[str, str] | None = None) -> int:
        """The status of a fetch() from the page: the browser sends its cookie, and only the headers given."""
        status: int = self.page.evaluate(
            "([url, method, headers]) => fetch(url, {method, headers, credentials: 'same-origin'})"
            ".then(r => r.status)", [self.base + path, method, headers or {}])
        return status

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser: Any, server: tuple[str, Path]) -> Iterator[Tab]:
    t = Tab(browser, server[0])
    try:
        yield t
    finally:
        t.close()
