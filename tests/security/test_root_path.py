"""Every way a prefix reaches the scope: the guard decides on the path the app routes on (401 without a token, 200 with)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from covet_pipe import PluginConfig, PluginManager, route_path, wrap
from covet_pipe.native import load_native
from tests._helpers import echo_app
from tests.native._cplugins import cplugins, probe  # noqa: F401 (the fixture)
from tests.security import _apps
from tests.security._servers import StripPrefixProxy, body, covet_serve, get, uvicorn_serve


@pytest.mark.parametrize(("path", "root", "expected"), [
    ("/admin", "", "/admin"),
    ("/api/admin", "/api", "/admin"),
    ("/api", "/api", ""),
    ("/api/", "/api", "/"),
    ("/apix/admin", "/api", "/apix/admin"),      # a prefix ends at a segment boundary
    ("/admin", "/api", "/admin"),                # a path that does not start with root_path is left alone
    ("/api/api/admin", "/api", "/api/admin"),
])
def test_route_path_matches_starlettes_router(path: str, root: str, expected: str) -> None:
    from starlette._utils import get_route_path
    scope = {"type": "http", "path": path, "root_path": root}
    assert route_path(scope) == get_route_path(scope) == expected


def _check(port: int, target: str, app_route_path: str = "/admin") -> None:
    anonymous = get(port, target)
    forged = get(port, target, [("authorization", "Bearer " + _apps.token(key="x" * 40))])
    allowed = get(port, target, [("authorization", "Bearer " + _apps.token())])
    assert anonymous.status == 401, (target, anonymous)
    assert anonymous.header("www-authenticate") == "Bearer"
    assert forged.status == 401, (target, forged)
    assert allowed.status == 200, (target, allowed)
    seen = body(allowed)
    assert (seen["route"], seen["route_path"]) == ("protected", app_route_path)
    assert allowed.header("x-guard-route") == app_route_path     # the guard decided on the same path


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """One of each: covet-pipe serve (plain, --root-path, Mount, FastAPI) and uvicorn (the same)."""
    logs = tmp_path_factory.mktemp("logs")
    app = "tests.security._apps:"
    with covet_serve(app + "app", log=logs / "plain") as plain, \
            covet_serve(app + "app", "--root-path", "/api", log=logs / "root") as root, \
            covet_serve(app + "mounted", log=logs / "mounted") as mounted, \
            covet_serve(app + "fastapi_app", log=logs / "fastapi") as fa, \
            uvicorn_serve(_apps.app, root_path="/api") as u_root, \
            uvicorn_serve(_apps.mounted) as u_mounted, \
            uvicorn_serve(_apps.fastapi_app) as u_fa:
        yield {"serve": plain.port, "serve --root-path": root.port, "serve Mount": mounted.port,
               "serve FastAPI": fa.port, "uvicorn --root-path": u_root.port, "uvicorn Mount": u_mounted.port,
               "uvicorn FastAPI": u_fa.port}


def test_no_prefix_guards_admin(servers: dict[str, int]) -> None:
    _check(servers["serve"], "/admin")
    _check(servers["serve"], "/admin/users", "/admin/users")


@pytest.mark.parametrize("server", ["serve --root-path", "uvicorn --root-path"])
def test_root_path_flag_guards_the_apps_admin_route(servers: dict[str, int], server: str) -> None:
    # The server puts /api in front of the client's /admin; the app routes on /admin.
    _check(servers[server], "/admin")
    _check(servers[server], "/admin/users", "/admin/users")


@pytest.mark.parametrize("server", ["serve Mount", "uvicorn Mount"])
def test_starlette_mount_guards_the_mounted_admin_route(servers: dict[str, int], server: str) -> None:
    _check(servers[server], "/api/admin")
    _check(servers[server], "/api/admin/users", "/admin/users")
    outside = get(servers[server], "/admin")                 # not under the mount: the outer app's 404
    assert outside.status == 404


@pytest.mark.parametrize("server", ["serve FastAPI", "uvicorn FastAPI"])
def test_fastapi_root_path_guards_admin_both_with_and_without_the_prefix(servers: dict[str, int],
                                                                        server: str) -> None:
    # FastAPI(root_path="/api") routes "/api/admin" and "/admin" alike on "/admin".
    _check(servers[server], "/api/admin")
    _check(servers[server], "/admin")


def test_proxy_that_strips_the_prefix_in_front_of_root_path(servers: dict[str, int]) -> None:
    # The usual deployment: the proxy takes /api off, the server is told with --root-path /api.
    with StripPrefixProxy(servers["serve --root-path"]) as proxy:
        _check(proxy.port, "/api/admin")
        public = get(proxy.port, "/api/docs")
    assert public.status == 200 and body(public)["route"] == "public"


def test_public_route_under_a_root_path_stays_public(servers: dict[str, int]) -> None:
    for name in ("serve --root-path", "uvicorn --root-path"):
        r = get(servers[name], "/adminx")
        assert r.status == 200 and body(r)["route"] == "public", name
        assert body(r)["route_path"] == r.header("x-guard-route") == "/adminx"


def test_native_plugin_sees_the_route_path_under_a_root_path(cplugins: Any) -> None:
    """What a C plugin gets as view->path: the route path, like the Python guards (uvicorn --root-path /api)."""
    manager = PluginManager()
    manager.register(load_native(probe("seer", priority=10)))
    with uvicorn_serve(wrap(echo_app, manager), root_path="/api") as s:
        r = get(s.port, "/admin/x")
    seen = dict(body(r)["headers"])
    assert body(r)["path"] == "/api/admin/x"               # the app's scope keeps the full path
    assert seen["x-seer-path"] == "/admin/x"


SANDBOXED_SEER = '''
from covet_pipe import MiddlewarePlugin, route_path

class Seer(MiddlewarePlugin):
    name = "sandboxed_seer"
    version = "1.0.0"
    def process_request(self, request, ctx):
        request.headers.set("x-sandboxed-route", route_path(request.scope))
        request.headers.set("x-sandboxed-path", request.path)

def create_plugin(config):
    return Seer()
'''


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")
def test_sandboxed_plugin_gets_the_root_path_in_its_helper(tmp_path: Path) -> None:
    """A sandboxed guard decides on route_path(request.scope) as an in-process one does (uvicorn --root-path)."""
    plugin = tmp_path / "seer.py"
    plugin.write_text(SANDBOXED_SEER)
    manager = PluginManager(PluginConfig(plugin_paths=[str(plugin)], sandbox_enabled=True, entry_points=False))
    with uvicorn_serve(wrap(echo_app, manager), root_path="/api") as s:
        r = get(s.port, "/admin/x")
    seen = dict(body(r)["headers"])
    assert (seen["x-sandboxed-route"], seen["x-sandboxed-path"]) == ("/admin/x", "/api/admin/x")
