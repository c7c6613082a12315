"""The browser session of the admin API through a real uvicorn on 127.0.0.1.

The bearer token is traded once for the ``covet_pipe_admin`` cookie (HttpOnly, SameSite=Strict,
opaque, server-side, expiring); the cookie then authenticates reads, and a call that changes state
needs ``X-Covet-Pipe: 1`` too. The page and its files are served without credentials, and nothing
else is.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from covet_pipe import PluginConfig, PluginManager, admin_app
from covet_pipe.admin import sessions
from covet_pipe.admin.dashboard import STATIC

TOKEN = "t0ken-for-the-dashboard-session-tests-0123"
OTHER = "another-token-for-another-admin-app-4567"

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
def served(serve: Any, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two admin apps over one manager, with different tokens: (url of the first, url of the second)."""
    (tmp_path / "stamp.py").write_text(textwrap.dedent(PLUGIN))
    manager = PluginManager(PluginConfig(plugin_paths=[str(tmp_path)], hot_reload=True))

    async def start() -> None:
        await manager.load_plugins()
        await manager.initialize_all()

    with serve(admin_app(manager, token=TOKEN)) as a, serve(admin_app(manager, token=OTHER)) as b:
        asyncio.run_coroutine_threadsafe(start(), a.loop).result(30)
        try:
            yield a.url, b.url
        finally:
            asyncio.run_coroutine_threadsafe(manager.shutdown_all(), a.loop).result(30)


class _Client:
    """Requests that carry only the headers given: no cookie jar, so each test sends the cookie it means."""

    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.get(url, timeout=10, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.post(url, timeout=10, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return httpx.delete(url, timeout=10, **kw)


def _open(client: _Client, url: str, token: str = TOKEN, query: str = "") -> httpx.Response:
    return client.post(f"{url}/_plugins/session{query}", headers={"Authorization": f"Bearer {token}"})


def _cookie(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    name, _, rest = header.partition("=")
    assert name == "covet_pipe_admin"
    return rest.split(";", 1)[0]


def test_the_page_and_its_files_need_no_credentials_and_forbid_inline_script(served: tuple[str, str]) -> None:
    url = served[0]
    with _Client() as c:
        page = c.get(url + "/_plugins/dashboard")
        assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert "<script src=\"static/dashboard.js\"" in page.text and "<script>" not in page.text
        assert " style=" not in page.text and "<style" not in page.text and "http" not in page.text   # no CDN
        for name, kind in STATIC.items():
            r = c.get(f"{url}/_plugins/static/{name}")
            assert (r.status_code, r.headers["content-type"]) == (200, kind), name
        # only those files are public: anything else under static/ is guarded like the API
        assert c.get(url + "/_plugins/static/secrets.txt").status_code == 401
        assert c.get(url + "/_plugins/static/../dashboard/snapshot").status_code in (401, 404)


def test_the_script_builds_the_page_from_text_only() -> None:
    # plugin names, versions and errors come from plugins: none of them may become markup or code
    from importlib import resources
    script = (resources.files("covet_pipe.admin") / "static" / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "localStorage", "sessionStorage", "setAttribute(\"style"):
        assert sink not in script, sink
    assert "textContent" in script


@pytest.mark.parametrize("path", ["/_plugins", "/_plugins/events", "/_plugins/dashboard/snapshot",
                                  "/_plugins/health"])
def test_data_endpoints_stay_guarded(served: tuple[str, str], path: str) -> None:
    with _Client() as c:
        r = c.get(served[0] + path)
        assert (r.status_code, r.json()) == (401, {"error": "unauthorized"})


def test_the_token_opens_a_session_whose_cookie_is_httponly_strict_opaque_and_expiring(
        served: tuple[str, str]) -> None:
    url = served[0]
    with _Client() as c:
        assert c.post(url + "/_plugins/session").status_code == 401
        assert c.post(url + "/_plugins/session", headers={"Authorization": "Bearer " + TOKEN + "x"}).status_code == 403
        r = _open(c, url)
        assert r.status_code == 200 and r.json() == {"open": True, "expires_in": int(sessions.TTL)}
        attributes = [a.strip() for a in r.headers["set-cookie"].split(";")[1:]]
        assert {"HttpOnly", "SameSite=Strict", "Path=/_plugins", f"Max-Age={int(sessions.TTL)}"} <= set(attributes)
        value = _cookie(r)
        assert len(value) >= 40 and TOKEN not in value and value != _cookie(_open(c, url))
        probe = c.get(url + "/_plugins/session", headers={"Cookie": f"covet_pipe_admin={value}"})
        assert probe.json()["open"] is True and 0 < probe.json()["expires_in"] <= sessions.TTL
        assert c.get(url + "/_plugins/session").json() == {"open": False, "expires_in": 0}


def test_the_cookie_reads_but_a_mutating_call_needs_the_x_covet_pipe_header(served: tuple[str, str]) -> None:
    url = served[0]
    with _Client() as c:
        cookie = {"Cookie": f"covet_pipe_admin={_cookie(_open(c, url))}"}
        listed = c.get(url + "/_plugins", headers=cookie)
        assert listed.status_code == 200 and [p["name"] for p in listed.json()] == ["stamp"]
        refused = c.post(url + "/_plugins/stamp/reload", headers=cookie)
        assert (refused.status_code, refused.json()) == (403, {"error": "forbidden"})
        assert c.post(url + "/_plugins/stamp/reload", headers={**cookie, "X-Covet-Pipe": "0"}).status_code == 403
        done = c.post(url + "/_plugins/stamp/reload", headers={**cookie, "X-Covet-Pipe": "1"})
        assert done.status_code == 200 and done.json()["reloaded"] == "stamp"
        # a bearer call is no cookie call: it needs no extra header
        assert c.post(url + "/_plugins/stamp/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_logging_out_ends_the_session_and_clears_the_cookie(served: tuple[str, str]) -> None:
    url = served[0]
    with _Client() as c:
        cookie = {"Cookie": f"covet_pipe_admin={_cookie(_open(c, url))}"}
        assert c.delete(url + "/_plugins/session", headers=cookie).status_code == 403     # the CSRF guard
        out = c.delete(url + "/_plugins/session", headers={**cookie, "X-Covet-Pipe": "1"})
        assert out.status_code == 200 and out.json() == {"open": False, "closed": True}
        assert "Max-Age=0" in out.headers["set-cookie"] and _cookie(out) == ""
        assert c.get(url + "/_plugins", headers=cookie).status_code == 401


def test_a_session_expires(served: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    url = served[0]
    monkeypatch.setattr(sessions.SESSIONS, "ttl", 0.3)
    with _Client() as c:
        cookie = {"Cookie": f"covet_pipe_admin={_cookie(_open(c, url))}"}
        assert c.get(url + "/_plugins", headers=cookie).status_code == 200
        time.sleep(0.5)
        assert c.get(url + "/_plugins", headers=cookie).status_code == 401


def test_a_session_is_bound_to_the_token_it_was_opened_with(served: tuple[str, str]) -> None:
    first, second = served
    with _Client() as c:
        cookie = {"Cookie": f"covet_pipe_admin={_cookie(_open(c, first))}"}
        assert c.get(first + "/_plugins", headers=cookie).status_code == 200
        assert c.get(second + "/_plugins", headers=cookie).status_code == 401


def test_a_stale_cookie_is_401_and_no_failed_attempt(served: tuple[str, str]) -> None:
    # a dashboard left open across a restart must not lock its address out of the admin API
    url = served[0]
    with _Client() as c:
        stale = {"Cookie": "covet_pipe_admin=" + "x" * 43}
        assert [c.get(url + "/_plugins", headers=stale).status_code for _ in range(15)] == [401] * 15
        assert c.get(url + "/_plugins", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_cookie_path_follows_the_mount_and_refuses_anything_else(served: tuple[str, str]) -> None:
    url = served[0]
    with _Client() as c:
        assert "Path=/ops/_plugins;" in _open(c, url, query="?path=/ops/_plugins").headers["set-cookie"]
        assert "Path=/_plugins;" in _open(c, url).headers["set-cookie"]
        for bad in ("", "/", "/x;%20Domain=evil.example", "/_plugins/../x", "//evil/_plugins"):
            answer = _open(c, url, query="?path=" + bad)
            assert answer.status_code == 400 and "set-cookie" not in answer.headers, bad
            assert "?path= must be /_plugins" in answer.json()["error"]


def test_the_store_is_bounded_and_keeps_no_cookie_value() -> None:
    store = sessions.SessionStore(ttl=60, max_sessions=3)
    values = [store.open(TOKEN) for _ in range(5)]
    assert len(store) == 3
    assert not store.valid(values[0], TOKEN) and store.valid(values[4], TOKEN)
    assert not store.valid(values[4], OTHER)
    assert all(v.encode() not in repr(vars(store)).encode() for v in values)
