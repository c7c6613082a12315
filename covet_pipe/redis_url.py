"""One way to reach Redis for everything in covet-pipe that uses it (storage, rate limits, the fleet).

``connect(url, ...)`` returns a ``redis.asyncio.Redis`` client with its own connection pool, for
``redis://``, ``rediss://`` and ``unix://`` URLs. A password never has to sit in the URL or in the
code: it can come from a file (a mounted secret) or an environment variable.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

__all__ = ["SCHEMES", "connect", "describe", "password_from"]

SCHEMES = ("redis", "rediss", "unix")


def password_from(*, password_file: str | None = None, password_env: str | None = None,
                  who: str = "redis") -> str | None:
    """The password in *password_file* (its first line) or in the variable *password_env*, or None.

    :raises ValueError: the file cannot be read, or the variable is not set; the message says what to do.
    """
    if password_file is not None and password_env is not None:
        raise ValueError(f"{who}: give password_file or password_env, not both")
    if password_file is not None:
        try:
            with open(os.path.expanduser(password_file), encoding="utf-8") as f:
                text = f.readline().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{who}: cannot read the password file {password_file!r}: {exc.strerror}; "
                             "create it (one line, the password) or leave password_file out") from None
        if not text:
            raise ValueError(f"{who}: the password file {password_file!r} is empty")
        return text
    if password_env is not None:
        value = os.environ.get(password_env)
        if not value:
            raise ValueError(f"{who}: the environment variable {password_env} holding the Redis password "
                             "is not set (or empty)")
        return value
    return None


def describe(url: str) -> str:
    """*url* with any password in it replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def connect(url: str, *, password_file: str | None = None, password_env: str | None = None,
            timeout: float | None = 2.0, who: str = "redis", **options: Any) -> Any:
    """A ``redis.asyncio.Redis`` client for *url* (no connection is made until the first command).

    :param timeout: seconds a command (and a connect) may take; None: no limit.
    :param who: named in error messages (the plugin that asked).
    :param options: passed to ``redis.asyncio.Redis.from_url`` (``max_connections``, ...).
    :raises ValueError: the URL's scheme is not one of redis, rediss, unix, or a password source fails.
    """
    if not isinstance(url, str) or urlsplit(url).scheme not in SCHEMES:
        raise ValueError(f"{who}: expected a Redis URL such as redis://127.0.0.1:6379/0, rediss://host:6380/0 "
                         f"or unix:///run/redis.sock, got {url!r}")
    import redis.asyncio as redis_asyncio      # the one place that loads redis-py

    password = password_from(password_file=password_file, password_env=password_env, who=who)
    if password is not None:
        options["password"] = password
    if timeout is not None:
        options.setdefault("socket_timeout", timeout)
        options.setdefault("socket_connect_timeout", timeout)
    return redis_asyncio.Redis.from_url(url, **options)
