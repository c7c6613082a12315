"""AuthGuard with JWTAuth: 401/403/200 for real tokens, through a real server."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from covet_pipe import PluginManager, wrap
from covet_pipe.builtin import CORS, AuthGuard, JWTAuth, JWTHandler
from tests.conftest import Served, text_app

SECRET = "guard-test-secret-" + "g" * 32


def bearer(claims: dict, key: str = SECRET) -> dict:
    claims = {"exp": int(time.time()) + 300, **claims}       # JWTAuth requires exp by default
    return {"authorization": f"Bearer {jwt.encode(claims, key, algorithm='HS256')}"}


def guarded(**guard_options) -> PluginManager:
    manager = PluginManager()
    manager.register(JWTHandler())
    manager.register(JWTAuth(secret_key=SECRET))
    manager.register(AuthGuard(provider="jwt_auth", **guard_options))
    return manager


@pytest.fixture(scope="module")
def server():
    # One server for the read-only checks below: starting uvicorn per test is most of their time.
    with Served(wrap(text_app, guarded(protect=["/private"], exempt=["/private/health"]))) as s:
        yield s


def test_no_token_gets_401_with_www_authenticate_bearer(server):
    r = httpx.get(server.url + "/private/data")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"error": "Authentication required"}


@pytest.mark.parametrize("authorization", ["Basic YW5uOnB3", "Bearer", "token-without-scheme"],
                         ids=["basic", "bearer-empty", "no-scheme"])
def test_non_bearer_authorization_gets_401(server, authorization):
    r = httpx.get(server.url + "/private", headers={"authorization": authorization})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


def test_expired_token_gets_401_invalid_token(server):
    r = httpx.get(server.url + "/private", headers=bearer({"sub": "ann", "exp": int(time.time()) - 30,
                                                          "roles": ["admin"]}))
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_token_signed_with_another_key_gets_401(server):
    r = httpx.get(server.url + "/private", headers=bearer({"roles": ["admin"]}, key="w" * 40))
    assert r.status_code == 401


def test_valid_token_without_permission_gets_403(server):
    r = httpx.get(server.url + "/private/data", headers=bearer({"sub": "ann", "permissions": ["/private/data:POST"]}))
    assert r.status_code == 403
    assert r.json() == {"error": "Forbidden"}


def test_valid_token_with_permission_reaches_app(server):
    claims = {"sub": "ann", "permissions": ["/private/data:GET"], "exp": int(time.time()) + 60}
    r = httpx.get(server.url + "/private/data", headers=bearer(claims))
    assert r.status_code == 200
    assert r.text == "GET /private/data seen="


def test_admin_role_reaches_any_protected_path_with_lowercase_scheme(server):
    token = jwt.encode({"sub": "root", "roles": ["admin"], "exp": int(time.time()) + 300}, SECRET,
                       algorithm="HS256")
    r = httpx.delete(server.url + "/private/x/y", headers={"authorization": f"bearer {token}"})
    assert r.status_code == 200
    assert r.text == "DELETE /private/x/y seen="


@pytest.mark.parametrize("path", ["/", "/public", "/privateer", "/private/health", "/private/health/deep"])
def test_unprotected_or_exempt_path_needs_no_token(server, path):
    r = httpx.get(server.url + path)
    assert r.status_code == 200
    assert r.text == f"GET {path} seen="


def test_default_protect_guards_every_path(serve):
    with serve(wrap(text_app, guarded())) as s:
        assert httpx.get(s.url + "/").status_code == 401
        assert httpx.get(s.url + "/", headers=bearer({"roles": ["superuser"]})).status_code == 200


def test_cors_preflight_to_protected_path_is_answered_without_token(serve):
    manager = guarded(protect=["/private"])
    manager.register(CORS(allow_origins=["https://app.example.com"], allow_headers=["Authorization"]))
    origin = {"origin": "https://app.example.com"}
    with serve(wrap(text_app, manager)) as s:
        pre = httpx.options(s.url + "/private", headers={**origin, "access-control-request-method": "GET",
                                                         "access-control-request-headers": "authorization"})
        denied = httpx.get(s.url + "/private", headers=origin)
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example.com"
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == "https://app.example.com"


async def test_websocket_handshake_to_protected_path_without_token_is_refused():
    app = wrap(text_app, guarded(protect=["/private"]))
    sent = []

    async def receive():
        return {"type": "websocket.connect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "path": "/private/ws", "raw_path": b"/private/ws",
             "query_string": b"", "headers": [], "scheme": "ws", "client": None, "server": None,
             "subprotocols": []}
    await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "Unauthorized"}]


async def test_guard_named_provider_missing_fails_the_guard_with_reason():
    manager = PluginManager()
    manager.register(AuthGuard(provider="ldap_auth"))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["plugins"]["auth_guard"]["state"] == "failed"
    assert "needs 'ldap_auth'" in health["plugins"]["auth_guard"]["error"]


async def test_guard_whose_provider_is_not_an_auth_plugin_fails_saying_so():
    manager = PluginManager()
    manager.register(JWTHandler())
    manager.register(AuthGuard(provider="jwt_handler"))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert "no authenticate() method" in health["plugins"]["auth_guard"]["error"]


def test_two_guards_with_different_names_can_be_registered():
    manager = guarded(protect=["/a"])
    manager.register(AuthGuard(provider="jwt_auth", protect=["/b"], name="auth_guard_b"))
    assert [p["name"] for p in manager.list_plugins() if p["name"].startswith("auth_guard")] == \
        ["auth_guard", "auth_guard_b"]


def test_guard_that_failed_to_start_does_not_leave_paths_open(serve):
    manager = PluginManager()
    manager.register(JWTAuth(secret_key=SECRET))            # jwt_handler missing: jwt_auth fails
    manager.register(AuthGuard(provider="jwt_auth", protect=["/private"]))
    with serve(wrap(text_app, manager)) as s:
        refused = httpx.get(s.url + "/private")
        assert refused.status_code == 503
        assert refused.json() == {"error": "Service Unavailable"}    # no plugin names, no traceback


@pytest.mark.parametrize(("options", "message"), [
    (dict(provider=""), "name of an auth plugin such as 'jwt_auth'"),
    (dict(protect="/private"), r"write protect=\['/private'\]"),
    (dict(exempt=["health"]), "starts with '/'.*write '/health'"),
    (dict(protect=["admin"]), "starts with '/'.*write '/admin'"),
    (dict(protect=[]), r"protect=\[\]\): an empty list guards no path at all; omit protect"),
    (dict(protect=["/admin/*"]), "matched literally.*write '/admin'"),
    (dict(protect=["/admin%2F"]), "matched literally.*percent-escapes"),
    (dict(protect=["/admin?x=1"]), "matched literally"),
    (dict(protect=["/admin"], exempt=["/"]), "'/' exempts all of the protected prefix '/admin'.*'/admin/health'"),
    (dict(exempt=["/admin"], protect=["/admin/users"]), "'/admin' exempts all of the protected prefix"),
], ids=["empty-provider", "protect-str", "exempt-no-slash", "protect-no-slash", "protect-empty",
        "protect-glob", "protect-percent", "protect-query", "exempt-everything", "exempt-covers-protect"])
def test_bad_config_raises_valueerror(options, message):
    with pytest.raises(ValueError, match=message):
        AuthGuard(**options)
