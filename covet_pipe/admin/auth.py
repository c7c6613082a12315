"""Who may call the admin API: one bearer token, compared in constant time, or a browser session.

No token means no admin API: :func:`load_token` refuses to return an empty one, so the app that
needs it cannot be built open. Failed attempts are counted per client address; past
``MAX_FAILURES`` in ``WINDOW`` seconds that address gets 429 until the window has passed.

A browser cannot put a bearer header on an EventSource, so the dashboard trades the token once for
a session (:mod:`covet_pipe.admin.sessions`): the ``covet_pipe_admin`` cookie is accepted too, but a
cookie-authenticated call that changes state (any method but GET/HEAD) must also carry
``X-Covet-Pipe: 1`` (CSRF guard: another site's page could send it only after a CORS preflight,
which the admin API never grants), else 403. Neither a stale cookie nor a missing header counts as
a failed attempt.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping

from covet_pipe.admin.sessions import SESSIONS, cookie_value

__all__ = ["Authenticator", "load_token", "read_token", "MAX_FAILURES", "WINDOW"]

MAX_FAILURES = 10       #: failed attempts one address may make in WINDOW seconds before 429
WINDOW = 60.0           #: seconds


def read_token(token: str | None, token_file: str | None, *, who: str, what: str) -> str | None:
    """*token*, or the first line of *token_file*, or None when neither is given; checked for length.

    :param who: the caller named in the errors (``admin_app``, ``PrometheusMetrics``).
    :param what: what the token guards, for the errors (``admin token``, ``scrape token``).
    """
    if token is not None and token_file is not None:
        raise ValueError(f"{who}: give token= or token_file=, not both")
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except OSError as exc:
            raise ValueError(f"{who}: cannot read the token file {token_file!r} ({exc.strerror}); "
                             "write the token on its first line") from None
        if not token:
            raise ValueError(f"{who}: the token file {token_file!r} is empty; write the token on its "
                             "first line")
    if token is not None and len(token) < 16:
        raise ValueError(f"{who}: the {what} is shorter than 16 characters; use a long random one "
                         "(python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def load_token(token: str | None, token_file: str | None) -> str:
    """The admin token from *token* or the first line of *token_file*; a clear error when neither gives one."""
    found = read_token(token, token_file, who="admin_app", what="admin token")
    if not found:
        raise ValueError("admin_app: the admin API is never served without a token; give token=... or "
                         "token_file=PATH (a long random string, e.g. python -c 'import secrets; "
                         "print(secrets.token_urlsafe(32))')")
    return found


class Authenticator:
    """Checks ``Authorization: Bearer <token>`` and rate-limits the addresses that get it wrong."""

    def __init__(self, token: str, *, max_failures: int = MAX_FAILURES, window: float = WINDOW,
                 public: Callable[[str, str], bool] | None = None) -> None:
        self._token = token.encode()
        self._max = max_failures
        self._window = window
        self._failures: dict[str, list[float]] = {}
        self._public = public

    def check(self, headers: Mapping[bytes, bytes], client: str, method: str = "GET", path: str | None = None) -> int:
        """0 when allowed, else the status to answer: 401 (no credentials), 403 (wrong), 429 (too many).

        *public* (method, path) pairs pass without credentials: pages and files that hold no data.
        """
        if path is not None and self._public is not None and self._public(method, path):
            return 0
        now = time.monotonic()
        recent = [t for t in self._failures.get(client, ()) if now - t < self._window]
        if len(recent) >= self._max:
            self._failures[client] = recent
            return 429
        value = headers.get(b"authorization", b"")
        scheme, _, given = value.partition(b" ")
        if not value and (cookie := cookie_value(headers)) is not None:
            # a stale or unknown cookie is 401 but no failed attempt: its value is 256 random bits,
            # and a dashboard left open across a restart must not lock its address out
            if not SESSIONS.valid(cookie, self._token):
                return 401
            return 0 if method in ("GET", "HEAD") or headers.get(b"x-covet-pipe") == b"1" else 403
        if scheme.lower() != b"bearer" or not given.strip():
            status = 401
        elif hmac.compare_digest(given.strip(), self._token):
            self._failures.pop(client, None)
            return 0
        else:
            status = 403
        recent.append(now)
        self._failures[client] = recent
        if len(self._failures) > 10_000:        # bounded: forget the oldest addresses
            for key in list(self._failures)[:5_000]:
                del self._failures[key]
        return status

    def retry_after(self, client: str) -> int:
        """Seconds until *client*'s oldest counted failure leaves the window."""
        times = self._failures.get(client)
        if not times:
            return 0
        return max(1, int(self._window - (time.monotonic() - times[0])) + 1)
