"""An attacker's table against the built-ins, through covet-pipe serve and uvicorn (with and without a prefix).

For every case: nothing without valid credentials reaches a protected route, and the guard and the
app's router agree on the route path (the guard's ``x-guard-route`` equals the path Starlette matched).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Iterator

import pytest

from tests.security import _apps
from tests.security._servers import Reply, body, covet_serve, get, uvicorn_serve

#: targets as the client sends them, before any prefix; llhttp refuses some (400), which is fine too
PATHS = [
    "/admin", "/admin/", "/admin/x", "/admin/x/", "//admin", "///admin/x", "/ADMIN", "/Admin/x",
    "/%61dmin", "/%61%64%6d%69%6e", "/admin%2fx", "/admin%2Fx", "/%2fadmin", "/%2Fadmin/x", "/./admin",
    "/admin/.", "/admin/./x", "/x/../admin", "/x/%2e%2e/admin", "/%2e/admin", "/admin%2e", "/admin;x",
    "/admin;/x", "/admin..;/x", "/admin%00", "/admin%20", "/admin%09", "/admin%0d%0a", "/%2561dmin",
    "/admin%5cx", "/admin\\x", "/%EF%BD%81dmin", "/admin%3fx=1", "/admin?x=1", "/admin#frag", "/adminx",
    "/admin-x", "/admi%6e/x", "/api/admin", "/admin/%2e%2e", "/admin/..", "/admin/%2e%2e/x",
]

NOW = int(time.time())


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(alg: str) -> str:
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64({'sub': 'ann', 'roles': ['admin'], 'exp': NOW + 600})}."


#: Authorization values that must never get through
FORGERIES = {
    "alg-none": "Bearer " + _unsigned("none"),
    "alg-None": "Bearer " + _unsigned("None"),
    "alg-none-with-sig": "Bearer " + _unsigned("none") + "c2ln",
    "other-alg-same-key": "Bearer " + _apps.token(algorithm="HS512", key=_apps.SECRET + "x" * 32),
    "wrong-key": "Bearer " + _apps.token(key="y" * 40),
    "expired": "Bearer " + _apps.token({"exp": NOW - 60}),
    "not-before-future": "Bearer " + _apps.token({"nbf": NOW + 600}),
    "no-exp": "Bearer " + _apps.token({"exp": None}),
    "kid-path": "Bearer " + _apps.token(key="z" * 40, kid="../../dev/null"),
    "jku-header": "Bearer " + _apps.token(key="z" * 40, jku="https://evil.example.org/jwks.json"),
    "jwk-header": "Bearer " + _apps.token(key="z" * 40, jwk={"kty": "oct", "k": _b64({"x": 1})}),
    "rs256-header-hmac-sig": "Bearer " + ".".join(
        [_b64({"alg": "RS256", "typ": "JWT"})] + _apps.token().split(".")[1:]),
    "truncated-sig": "Bearer " + _apps.token()[:-4],
    "no-sig": "Bearer " + ".".join(_apps.token().split(".")[:2]) + ".",
    "payload-swapped": "Bearer " + ".".join([_apps.token().split(".")[0],
                                             _b64({"sub": "eve", "roles": ["admin"], "exp": NOW + 600}),
                                             _apps.token().split(".")[2]]),
    "basic": "Basic " + base64.b64encode(b"admin:admin").decode(),
    "no-scheme": _apps.token(),
    "empty-bearer": "Bearer",
    "garbage": "Bearer not.a.jwt",
}

#: extra headers that must not stand in for credentials
HEADER_TRICKS = {
    "x-original-url": [("x-original-url", "/admin")],
    "x-rewrite-url": [("x-rewrite-url", "/admin")],
    "x-forwarded-prefix": [("x-forwarded-prefix", "/public")],
    "x-forwarded-for-localhost": [("x-forwarded-for", "127.0.0.1"), ("x-real-ip", "127.0.0.1")],
    "forwarded-host": [("forwarded", "for=127.0.0.1;host=internal")],
    "second-auth-after-forged": [("authorization", FORGERIES["wrong-key"]),
                                 ("authorization", "Bearer " + _apps.token())],
    "cookie-token": [("cookie", "access_token=" + _apps.token())],
    "x-api-key": [("x-api-key", _apps.token())],
}

SERVERS = ["serve", "serve --root-path", "serve Mount", "uvicorn", "uvicorn --root-path"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """Each server's port and the prefix a client puts in front of the app's paths."""
    logs = tmp_path_factory.mktemp("attack")
    with covet_serve("tests.security._apps:app", log=logs / "plain") as plain, \
            covet_serve("tests.security._apps:app", "--root-path", "/api", log=logs / "root") as root, \
            covet_serve("tests.security._apps:mounted", log=logs / "mounted") as mounted, \
            uvicorn_serve(_apps.app) as u_plain, uvicorn_serve(_apps.app, root_path="/api") as u_root:
        yield {"serve": (plain.port, ""), "serve --root-path": (root.port, ""),
               "serve Mount": (mounted.port, "/api"), "uvicorn": (u_plain.port, ""),
               "uvicorn --root-path": (u_root.port, "")}


def _route(reply: Reply) -> str | None:
    if reply.status != 200:
        return None
    return body(reply)["route"]


def _agrees(reply: Reply) -> bool:
    seen = body(reply)
    return reply.header("x-guard-route") is not None and seen["route_path"] == _unquote(reply.header("x-guard-route"))


def _unquote(value: str | None) -> str:
    from urllib.parse import unquote
    return unquote(value or "")


@pytest.mark.parametrize("server", SERVERS)
def test_path_encodings_never_reach_a_protected_route_without_a_token(servers: dict, server: str) -> None:
    port, prefix = servers[server]
    reached = []
    for path in PATHS:
        target = prefix + path
        anonymous = get(port, target)
        allowed = get(port, target, [("authorization", "Bearer " + _apps.token())])
        case = (server, target, anonymous.status, allowed.status)
        assert _route(anonymous) != "protected", case
        if _route(allowed) == "protected":
            reached.append(path)
            assert anonymous.status == 401, case        # the router would serve it protected: the guard guards
            assert _agrees(allowed), (case, body(allowed), allowed.header("x-guard-route"))
        if anonymous.status == 200:
            assert _agrees(anonymous), (case, body(anonymous), anonymous.header("x-guard-route"))
    # the table holds paths the router does serve from the protected routes, and decoded ones among them
    assert {"/admin", "/admin/", "/admin/x", "/%61dmin", "/admin%2fx"} <= set(reached), reached


@pytest.mark.parametrize("server", SERVERS)
def test_jwt_forgeries_get_401(servers: dict, server: str) -> None:
    port, prefix = servers[server]
    for name, value in FORGERIES.items():
        r = get(port, prefix + "/admin", [("authorization", value)])
        assert r.status == 401, (server, name, r)
        assert r.header("www-authenticate") is not None and b"Traceback" not in r.body, (server, name)


@pytest.mark.parametrize("server", SERVERS)
def test_header_tricks_do_not_stand_in_for_credentials(servers: dict, server: str) -> None:
    port, prefix = servers[server]
    for name, headers in HEADER_TRICKS.items():
        for path in ("/admin", "/public"):
            r = get(port, prefix + path, headers)
            assert _route(r) != "protected", (server, name, path, r)
            if path == "/admin":
                assert r.status in (400, 401), (server, name, r)
