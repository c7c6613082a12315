"""JWTAuth: authenticate real tokens and authorise by permissions and admin roles; a hand-written JWT
auth plugin on the jwt_handler service runs against the built-in one."""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import jwt
import pytest

from covet_pipe import AuthPlugin, PluginManager
from covet_pipe.builtin import JWTAuth, JWTHandler
from covet_pipe.types import PluginContext, Request, Response  # noqa: F401  (covet_pipe.types, as plugins import it)

SECRET = "s3cret-for-tests-" + "x" * 32


def token(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


async def started(provider) -> PluginManager:
    manager = PluginManager()
    manager.register(JWTHandler())
    manager.register(provider)
    await manager.initialize_all()
    return manager


async def test_authenticate_valid_token_returns_its_claims():
    manager = await started(JWTAuth(SECRET))
    auth = manager.get_auth_provider("jwt_auth")
    claims = {"sub": "ann", "roles": ["user"], "exp": int(time.time()) + 60}
    assert await auth.authenticate({"token": token(claims)}) == claims


@pytest.mark.parametrize("credentials", [
    {},
    {"token": ""},
    {"token": None},
    {"token": 42},
    {"token": "not.a.jwt"},
    {"token": token({"sub": "ann", "exp": int(time.time()) - 10})},
    {"token": token({"sub": "ann"}, key="another-key-" + "y" * 32)},
    {"token": token({"sub": "ann"}, algorithm="HS512", key=SECRET * 2)},
], ids=["missing", "empty", "none", "not-str", "garbage", "expired", "wrong-key", "other-algorithm"])
async def test_authenticate_bad_or_missing_token_returns_none(credentials):
    manager = await started(JWTAuth(SECRET))
    assert await manager.get_auth_provider("jwt_auth").authenticate(credentials) is None


async def test_authenticate_checks_audience_and_issuer_when_configured():
    manager = await started(JWTAuth(SECRET, audience="api", issuer="https://id.example.com"))
    auth = manager.get_auth_provider("jwt_auth")
    exp = int(time.time()) + 60
    good = token({"sub": "ann", "aud": "api", "iss": "https://id.example.com", "exp": exp})
    other_aud = token({"sub": "ann", "aud": "web", "iss": "https://id.example.com", "exp": exp})
    assert (await auth.authenticate({"token": good}))["sub"] == "ann"
    assert await auth.authenticate({"token": other_aud}) is None


@pytest.mark.parametrize(("user", "expected"), [
    ({"permissions": ["/docs:GET"]}, True),
    ({"permissions": ["/docs:POST"]}, False),
    ({"roles": ["admin"]}, True),
    ({"roles": ["superuser"]}, True),
    ({"roles": ["user"], "permissions": []}, False),
    ({}, False),
    # A string claim must not match by substring ("/docs:GET" in "/docs:GETX").
    ({"permissions": "/docs:GETX"}, False),
    ({"roles": "admin"}, False),
], ids=["permission", "other-permission", "admin", "superuser", "plain-user", "no-claims",
        "permissions-str", "roles-str"])
async def test_authorize_follows_permission_then_role_rules(user, expected):
    assert await JWTAuth(SECRET).authorize(user, "/docs", "GET") is expected


async def test_without_jwt_handler_jwt_auth_fails_naming_the_dependency():
    manager = PluginManager()
    manager.register(JWTAuth(SECRET))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["plugins"]["jwt_auth"]["state"] == "failed"
    assert "register 'jwt_handler'" in health["plugins"]["jwt_auth"]["error"]


async def test_authenticate_before_initialize_raises_saying_what_to_do():
    with pytest.raises(RuntimeError, match=r"register JWTHandler\(\)"):
        await JWTAuth(SECRET).authenticate({"token": token({"sub": "ann"})})


@pytest.mark.parametrize(("args", "message"), [
    (("",), "non-empty str or bytes"),
    (("short",), r"5 bytes, but HS256 needs at least 32"),
    ((SECRET, "none"), r"'none' is not available; use one of HS256"),
    ((SECRET, "HS999"), "'HS999' is not available"),
], ids=["empty-key", "short-key", "alg-none", "unknown-alg"])
def test_bad_config_raises_valueerror_saying_what_to_use(args, message):
    with pytest.raises(ValueError, match=message):
        JWTAuth(*args)


# -- a JWT auth plugin of its own, written on the jwt_handler service, against the built-in one -------

class JWTAuthPlugin(AuthPlugin):
    def __init__(self, secret_key: str, algorithm: str = "HS256"):
        self.secret_key = secret_key
        self.algorithm = algorithm

    @property
    def name(self) -> str:
        return "jwt_auth"

    @property
    def version(self) -> str:
        return "1.0.0"

    async def initialize(self, ctx: PluginContext) -> None:
        self.jwt_handler = ctx.get_service("jwt_handler")

    async def authenticate(self, credentials: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        token = credentials.get("token")
        if not token:
            return None

        try:
            payload = self.jwt_handler.decode(token, self.secret_key, algorithms=[self.algorithm])
            return payload
        except Exception:
            return None

    async def authorize(self, user: Dict[str, Any], resource: str, action: str) -> bool:
        roles = user.get("roles", [])
        permissions = user.get("permissions", [])

        # Check role-based access
        if f"{resource}:{action}" in permissions:
            return True

        # Check role permissions
        return any(role in ["admin", "superuser"] for role in roles)


async def test_own_jwt_auth_plugin_on_the_jwt_handler_service_runs_against_the_built_in_one():
    manager = PluginManager()
    manager.register(JWTHandler())
    manager.register(JWTAuthPlugin(secret_key=SECRET))
    await manager.initialize_all()
    auth = manager.get_auth_provider("jwt_auth")
    user = await auth.authenticate({"token": token({"sub": "ann", "roles": ["admin"]})})
    assert user == {"sub": "ann", "roles": ["admin"]}
    assert await auth.authorize(user, "/anything", "DELETE") is True
    assert await auth.authenticate({"token": token({"sub": "ann"}, key="z" * 32)}) is None
    await manager.shutdown_all()
