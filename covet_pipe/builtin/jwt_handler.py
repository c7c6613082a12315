"""JWTHandler: the ``jwt_handler`` service, PyJWT's encode and decode for other plugins."""

from __future__ import annotations

from typing import Any, Iterable

import jwt

from covet_pipe import Plugin

__all__ = ["JWTHandler"]


class JWTHandler(Plugin):
    """Encodes and decodes JSON Web Tokens with PyJWT; other plugins get it by name.

    ``ctx.get_service("jwt_handler")`` returns this plugin itself, whose :meth:`decode` and
    :meth:`encode` take PyJWT's arguments: an auth plugin calls ``jwt_handler.decode(token, key,
    algorithms=[...])`` as it would call ``jwt.decode``.
    Decoding raises PyJWT's errors (``jwt.InvalidTokenError`` and its subclasses, such as
    ``jwt.ExpiredSignatureError``).

    :param leeway: seconds of clock skew accepted on ``exp``, ``nbf`` and ``iat``.
    :param require: claims every token must carry, such as ``["exp"]``.
    """

    name = "jwt_handler"
    version = "1.0.0"

    #: PyJWT's exception base, for callers that do not import jwt themselves
    InvalidTokenError = jwt.InvalidTokenError

    def __init__(self, *, leeway: float = 0.0, require: Iterable[str] = ()) -> None:
        if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) or leeway < 0:
            raise ValueError(f"JWTHandler(leeway=...): expected seconds >= 0 such as 30, got {leeway!r}")
        if isinstance(require, str):
            raise ValueError(f"JWTHandler(require=...): expected a list of claim names such as ['exp'], "
                             f"got the string {require!r}; write require=[{require!r}]")
        self.leeway = leeway
        self.require = list(require)

    def decode(self, token: str | bytes, key: Any, algorithms: list[str], *, audience: Any = None,
               issuer: str | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The verified claims of *token*.

        :raises jwt.InvalidTokenError: for a bad signature, an expired token, a wrong audience ...
        :raises ValueError: if *algorithms* is empty or a string (PyJWT would match an algorithm
            against a string by substring).
        """
        if isinstance(algorithms, str) or not algorithms:
            raise ValueError(f"JWTHandler.decode(algorithms=...): expected a list such as ['HS256'], "
                             f"got {algorithms!r}")
        opts: Any = dict(options or {})
        if self.require:
            # Both lists count: a caller's require=["exp"] must not drop the handler's own claims.
            asked = list(opts.get("require") or ())
            opts["require"] = asked + [c for c in self.require if c not in asked]
        return jwt.decode(token, key, algorithms=list(algorithms), audience=audience, issuer=issuer,
                          leeway=self.leeway, options=opts or None)

    def encode(self, payload: dict[str, Any], key: Any, algorithm: str = "HS256",
               headers: dict[str, Any] | None = None) -> str:
        """A signed token carrying *payload*."""
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers)
