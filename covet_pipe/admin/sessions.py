"""Browser sessions of the admin API: an opaque cookie value mapped, server-side, to an expiry.

``POST /_plugins/session`` with the bearer token opens one; the browser then holds only the
``covet_pipe_admin`` cookie (HttpOnly, SameSite=Strict), a random value that means nothing
without this process's table. The table keeps digests, not the values, and binds each session to
the token it was opened with: an app built with another token does not accept it. Sessions live in
the serving process's memory: a restart ends them all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

__all__ = ["COOKIE", "MAX_SESSIONS", "SESSIONS", "SessionStore", "TTL", "cookie_value", "set_cookie"]

COOKIE = "covet_pipe_admin"     #: the cookie's name
TTL = 8 * 3600.0                #: seconds a session lasts from its opening (a working day)
MAX_SESSIONS = 1000             #: past this many open sessions the oldest is dropped


def _digest(value: str | bytes) -> bytes:
    return hashlib.sha256(value.encode() if isinstance(value, str) else value).digest()


class SessionStore:
    """Open sessions: sha256(cookie value) -> (sha256(token), monotonic expiry); bounded."""

    def __init__(self, ttl: float = TTL, max_sessions: int = MAX_SESSIONS) -> None:
        self.ttl = ttl
        self._max = max_sessions
        #: insertion order is opening order, so the first key is the oldest session
        self._open: dict[bytes, tuple[bytes, float]] = {}

    def open(self, token: str | bytes) -> str:
        """A new session for the holder of *token*; returns the cookie value (43 url-safe characters)."""
        now = time.monotonic()
        for key in [k for k, (_, until) in self._open.items() if until <= now]:
            del self._open[key]
        while len(self._open) >= self._max:
            del self._open[next(iter(self._open))]
        value = secrets.token_urlsafe(32)
        self._open[_digest(value)] = (_digest(token), now + self.ttl)
        return value

    def remaining(self, value: str | bytes) -> float:
        """Seconds until the session *value* expires; 0 when it is unknown, closed or expired."""
        entry = self._open.get(_digest(value))
        if entry is None:
            return 0.0
        left = entry[1] - time.monotonic()
        if left <= 0:
            del self._open[_digest(value)]
            return 0.0
        return left

    def valid(self, value: str | bytes, token: str | bytes) -> bool:
        """Whether *value* is an open session that was opened with *token*."""
        if self.remaining(value) <= 0:
            return False
        return hmac.compare_digest(self._open[_digest(value)][0], _digest(token))

    def close(self, value: str | bytes) -> bool:
        """End the session *value*; False when there was none."""
        return self._open.pop(_digest(value), None) is not None

    def __len__(self) -> int:
        return len(self._open)


#: the process's sessions (the admin apps of one process share it; each session names its token)
SESSIONS = SessionStore()


def cookie_value(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The ``covet_pipe_admin`` cookie's value from a request's ``cookie`` header, or None."""
    for pair in headers.get(b"cookie", b"").split(b";"):
        name, eq, value = pair.strip().partition(b"=")
        if eq and name == COOKIE.encode() and value:
            return value.strip(b'"')
    return None


def set_cookie(value: str, path: str, max_age: int) -> bytes:
    """The ``Set-Cookie`` header value for *value* (an empty value with max_age 0 deletes the cookie)."""
    return (f"{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict").encode()
