"""JWTAuth: the ``jwt_auth`` provider, which checks Bearer JWTs and role/permission claims."""

from __future__ import annotations

from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from covet_pipe import AuthPlugin, PluginContext

__all__ = ["JWTAuth"]

#: the shortest HMAC key (bytes) per algorithm: the hash's output size (RFC 7518 section 3.2)
_HMAC_MIN_KEY = {"HS256": 32, "HS384": 48, "HS512": 64}
#: roles allowed every action on every resource, whatever their permissions
ADMIN_ROLES = ("admin", "superuser")


class JWTAuth(AuthPlugin):
    """Authenticates with a signed JWT and authorises by its ``permissions`` and ``roles`` claims.

    ``authenticate({"token": ...})`` returns the token's claims, or None when the token is
    missing, malformed, badly signed, expired or (unless ``require_exp=False``) without ``exp``.
    ``authorize(user, resource, action)`` allows when ``"resource:action"`` is in
    ``user["permissions"]`` or a role is admin or superuser.
    It decodes through the ``jwt_handler`` service (:class:`JWTHandler`). A guard middleware
    (:class:`AuthGuard`) calls it on requests.

    :param secret_key: the HMAC secret, or the public key for RS*/ES*/EdDSA.
    :param algorithm: the one algorithm tokens must be signed with.
    :param audience: when given, tokens must carry this ``aud``.
    :param issuer: when given, tokens must carry this ``iss``.
    :param require_exp: tokens must carry ``exp`` (the default): a token without one, once issued or
        leaked, is good forever. ``require_exp=False`` accepts them (an ``exp`` that is there is
        still checked).
    """

    name = "jwt_auth"
    version = "1.0.0"
    dependencies = ["jwt_handler>=1,<2"]

    def __init__(self, secret_key: str | bytes, algorithm: str = "HS256", *, audience: str | None = None,
                 issuer: str | None = None, require_exp: bool = True) -> None:
        if not isinstance(secret_key, (str, bytes)) or not secret_key:
            raise ValueError("JWTAuth(secret_key=...): expected a non-empty str or bytes, such as "
                             "os.environ['JWT_SECRET']")
        available = get_default_algorithms()
        # "none" accepts unsigned tokens: anyone could forge any user.
        if algorithm == "none" or algorithm not in available:
            names = ", ".join(sorted(a for a in available if a != "none"))
            more = "" if "RS256" in available else " (RS*/ES*/EdDSA need 'pip install pyjwt[crypto]')"
            raise ValueError(f"JWTAuth(algorithm=...): {algorithm!r} is not available; use one of "
                             f"{names}{more}")
        minimum = _HMAC_MIN_KEY.get(algorithm)
        size = len(secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key)
        if minimum is not None and size < minimum:
            # A short HMAC key can be guessed offline from any token the server ever issued.
            raise ValueError(
                f"JWTAuth(secret_key=...): the key is {size} bytes, but {algorithm} needs at least {minimum} "
                f"(RFC 7518 section 3.2); make one with: python -c \"import secrets; "
                f"print(secrets.token_urlsafe({minimum}))\"")
        self.secret_key = secret_key
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        if not isinstance(require_exp, bool):
            raise ValueError(f"JWTAuth(require_exp=...): expected True or False, got {require_exp!r}")
        self.require_exp = require_exp
        self.jwt_handler: Any = None

    async def initialize(self, ctx: PluginContext) -> None:
        self.jwt_handler = ctx.get_service("jwt_handler")

    async def authenticate(self, credentials: dict[str, Any]) -> dict[str, Any] | None:
        """The token's claims, or None for a missing or invalid token.

        :raises RuntimeError: if the plugin was never initialised (no ``jwt_handler`` yet).
        """
        token = credentials.get("token")
        if not token or not isinstance(token, (str, bytes)):
            return None
        if self.jwt_handler is None:
            raise RuntimeError("JWTAuth is not initialised: register JWTHandler() beside it and start the "
                               "plugins (await manager.initialize_all(), or serve through the pipeline)")
        kwargs: dict[str, Any] = {}
        # Passed only when set, so a handler with PyJWT's plain decode() signature still works.
        if self.audience is not None:
            kwargs["audience"] = self.audience
        if self.issuer is not None:
            kwargs["issuer"] = self.issuer
        if self.require_exp:
            kwargs["options"] = {"require": ["exp"]}
        try:
            payload = self.jwt_handler.decode(token, self.secret_key, algorithms=[self.algorithm], **kwargs)
        except jwt.PyJWTError:
            return None
        return payload if isinstance(payload, dict) else None

    async def authorize(self, user: dict[str, Any], resource: str, action: str) -> bool:
        """Whether *user* may do *action* on *resource*: a ``"resource:action"`` permission, or an admin role."""
        permissions = _listed(user.get("permissions"))
        if f"{resource}:{action}" in permissions:
            return True
        return any(role in ADMIN_ROLES for role in _listed(user.get("roles")))


def _listed(claim: Any) -> list[Any]:
    # Only a JSON array counts: ``"/a:GET" in "/a:GET/b"`` on a string claim would match by substring.
    return claim if isinstance(claim, list) else []
