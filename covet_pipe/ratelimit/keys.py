"""What a bucket is keyed by: ``"client"``, ``"global"``, ``"header:NAME"``, ``"jwt:CLAIM"``, ``"path"``.

A key function takes the request and returns a short string. Values a client controls (a header, a
path, a claim) longer than 64 characters or holding anything but ``[A-Za-z0-9._:/@-]`` are replaced
by a hash of themselves, so a bucket's name stays short and safe in Redis and in logs.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable

from covet_pipe.routing import route_path

__all__ = ["KEY_KINDS", "key_function", "safe"]

KEY_KINDS = "'client', 'global', 'header:x-api-key', 'jwt:sub' or 'path'"

_PLAIN = re.compile(r"[A-Za-z0-9._:/@-]{1,64}")
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")

KeyFunction = Callable[[Any], str]


def safe(value: str) -> str:
    """*value* if it is short and plain, else ``"#"`` and a hash of it."""
    if _PLAIN.fullmatch(value):
        return value
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _client(request: Any) -> str:
    # scope["client"]: behind a trusted PROXY header the listener put the real address there
    client = request.client
    return client[0] if client else "-"


def _global(request: Any) -> str:
    return "*"


def _path(request: Any) -> str:
    return safe(route_path(request.scope) or "/")


def key_function(spec: Any, who: str = "RateLimit") -> KeyFunction:
    """The key function for *spec*.

    - ``"client"``: the client's address (``scope["client"]``; the real one behind a trusted PROXY).
    - ``"global"``: one bucket for every request.
    - ``"header:NAME"``: the header's value; requests without it share one bucket, ``-``.
    - ``"jwt:CLAIM"``: the claim of the user an auth guard verified (``request.state["user"]``);
      requests without one are keyed by client address instead.
    - ``"path"``: the route path.
    - a callable ``f(request) -> str``: your own.

    :raises ValueError: naming *who* and the kinds there are.
    """
    if callable(spec):
        custom: KeyFunction = spec
        return lambda request: safe(str(custom(request)))
    if spec == "client":
        return _client
    if spec == "global":
        return _global
    if spec == "path":
        return _path
    if isinstance(spec, str) and spec.startswith("header:") and _HEADER.fullmatch(spec[7:]):
        name = spec[7:].lower()

        def _header(request: Any) -> str:
            value = request.headers.get(name)
            return "-" if value is None else "h:" + safe(value)
        return _header
    if isinstance(spec, str) and spec.startswith("jwt:") and spec[4:]:
        claim = spec[4:]

        def _jwt(request: Any) -> str:
            user = request.state.get("user")
            value = user.get(claim) if isinstance(user, dict) else None
            if value is None:
                return "c:" + _client(request)
            return "u:" + safe(str(value))
        return _jwt
    raise ValueError(f"{who}: key={spec!r} is not a key kind; use {KEY_KINDS} (or a function of "
                     "the request returning a string)")
