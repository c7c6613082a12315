"""The admin API through a real uvicorn on 127.0.0.1, mounted beside the served app.

Every endpoint with no token, a wrong token and the right one; a reload through the API that
changes what is served; a failing reload that leaves the old version serving; an unknown plugin;
the failed-attempt rate limit; and ``admin_app`` refusing to be built without a token.
"""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from covet_pipe import PluginManager, admin_app
from tests.admin._apps import STAMP, admin_beside_app
from tests._process import free_port, start_until_ready, stop

TOKEN = "t0ken-for-the-admin-api-tests-0123456789"

PLUGIN = STAMP
APP = admin_beside_app(TOKEN)


def _write_plugin(folder: Path, version: str) -> None:
    (folder / "plugins" / "stamp.py").write_text(PLUGIN.format(version=version))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("admin")
    (folder / "plugins").mkdir()
    _write_plugin(folder, "1.0.0")
    (folder / "adminapp.py").write_text(APP)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "adminapp:app", "--host", "127.0.0.1",
                              "--port", str(port)], port, folder, folder / "server.log")
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        stop(proc)


def call(base: str, method: str, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


ENDPOINTS = [("GET", "/_plugins"), ("GET", "/_plugins/health"), ("GET", "/_plugins/chain"),
             ("POST", "/_plugins/stamp/reload")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_no_token_is_401_with_no_detail(server: tuple[str, Path], method: str, path: str) -> None:
    status, headers, body = call(server[0], method, path, token=None)
    assert (status, body) == (401, {"error": "unauthorized"})
    assert headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_wrong_token_is_403_with_no_detail(server: tuple[str, Path], method: str, path: str) -> None:
    status, _, body = call(server[0], method, path, token=TOKEN + "x")
    assert (status, body) == (403, {"error": "forbidden"})


def test_list_health_and_chain_with_the_token(server: tuple[str, Path]) -> None:
    base = server[0]
    status, headers, plugins = call(base, "GET", "/_plugins")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [p["name"] for p in plugins] == ["stamp"]
    assert plugins[0]["state"] == "active" and "calls" in plugins[0]["stats"]
    status, _, health = call(base, "GET", "/_plugins/health")
    assert status == 200 and health["status"] == "ok" and health["plugins"]["stamp"]["state"] == "active"
    status, _, chain = call(base, "GET", "/_plugins/chain")
    assert status == 200 and [e["name"] for e in chain["middleware"]] == ["stamp"]


def test_reload_through_the_api_serves_the_new_version(server: tuple[str, Path]) -> None:
    base, folder = server
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        before = r.headers["x-stamp"]
    _write_plugin(folder, "2.0.0")
    status, _, body = call(base, "POST", "/_plugins/stamp/reload")
    assert (status, body) == (200, {"reloaded": "stamp", "version": "2.0.0"})
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert (before, r.headers["x-stamp"]) == ("1.0.0", "2.0.0")


def test_a_failing_reload_is_409_and_the_old_version_keeps_serving(server: tuple[str, Path]) -> None:
    base, folder = server
    version = call(base, "GET", "/_plugins")[2][0]["version"]
    (folder / "plugins" / "stamp.py").write_text("this is not python (\n")
    status, _, body = call(base, "POST", "/_plugins/stamp/reload")
    assert status == 409 and "stamp" in body["error"] and body["serving"] == "the old version keeps serving"
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.status == 200 and r.headers["x-stamp"] == version
    _write_plugin(folder, version)


def test_an_unknown_plugin_or_path_is_404_and_a_wrong_method_405(server: tuple[str, Path]) -> None:
    base = server[0]
    status, _, body = call(base, "POST", "/_plugins/nope/reload")
    assert status == 404 and body["plugins"] == ["stamp"] and "'nope'" in body["error"]
    assert call(base, "GET", "/_plugins/nothing/here")[0] == 404
    status, _, body = call(base, "DELETE", "/_plugins")
    assert status == 405 and "GET" in body["error"]


def test_failed_attempts_are_rate_limited_per_address(server: tuple[str, Path]) -> None:
    # runs last in this module: once limited, 127.0.0.1 gets 429 even with the right token for a minute
    base = server[0]
    statuses = [call(base, "GET", "/_plugins", token="wrong-token-" + str(i))[0] for i in range(12)]
    assert statuses[:10] == [403] * 10 and statuses[10:] == [429, 429]
    status, headers, body = call(base, "GET", "/_plugins")
    assert (status, body) == (429, {"error": "too many failed attempts"}) and int(headers["retry-after"]) >= 1


def test_no_token_means_no_admin_app(tmp_path: Path) -> None:
    manager = PluginManager()
    with pytest.raises(ValueError, match="never served without a token"):
        admin_app(manager)
    with pytest.raises(ValueError, match="shorter than 16"):
        admin_app(manager, token="short")
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        admin_app(manager, token_file=str(empty))
    with pytest.raises(ValueError, match="cannot read the token file"):
        admin_app(manager, token_file=str(tmp_path / "missing"))
    good = tmp_path / "good"
    good.write_text(TOKEN + "\n")
    assert admin_app(manager, token_file=str(good)).manager is manager


def test_the_docstring_names_each_endpoint() -> None:
    doc = textwrap.dedent(admin_app.__doc__ or "")
    from covet_pipe.admin.routes import ROUTES
    assert all(r.path in doc for r in ROUTES)


def test_mounted_under_a_starlette_prefix_it_answers_below_it() -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    manager = PluginManager()
    outer = Starlette(routes=[Mount("/ops", app=admin_app(manager, token=TOKEN))])

    async def go() -> tuple[int, Any, int]:
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ok = await client.get("/ops/_plugins", headers={"Authorization": f"Bearer {TOKEN}"})
            refused = await client.get("/ops/_plugins")
            return ok.status_code, ok.json(), refused.status_code

    import asyncio
    assert asyncio.run(go()) == (200, [], 401)
