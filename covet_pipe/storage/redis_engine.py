"""RedisStorage: the ``redis`` storage engine, bytes under string keys in a Redis server (redis-py asyncio).

One client with its own connection pool per engine, made by :func:`covet_pipe.redis_url.connect` in
``initialize()`` and closed in ``shutdown()``. Every call is bounded by ``timeout`` (waiting for a free
connection included). A call that cannot reach Redis raises :class:`StorageUnavailableError` (HTTP 503
when a plugin hook lets it through; ``-ERR`` on the RESP front); the pool reconnects on a later call,
so the engine recovers by itself when Redis is back.

Every call is one Redis command (the read-modify-write ones in ``redis_ops.py``, the compound ones and
transactions in ``redis_batch.py``): ``atomic(ops)`` is one Redis MULTI/EXEC, and ``watch(keys)`` is
Redis's own WATCH on a connection pinned for the transaction, so it sees writers that bypass covet-pipe.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from covet_pipe import redis_url
from covet_pipe.logsafe import logger, printable
from covet_pipe.plugin import StoragePlugin
from covet_pipe.server.resp.errors import StorageFullError
from covet_pipe.storage.checks import check_key, check_ttl, check_value
from covet_pipe.storage.errors import StorageError, StorageUnavailableError, WrongTypeError
from covet_pipe.storage.redis_batch import RedisBatch
from covet_pipe.storage.redis_ops import RedisOps

if TYPE_CHECKING:
    from covet_pipe.context import PluginContext

__all__ = ["RedisStorage"]

log = logger("covet_pipe.storage.redis")

#: the longest TTL Redis takes, in ms (its expire time, now + ttl in ms, must fit a signed 64-bit integer)
MAX_TTL_MS = 2 ** 62
#: ResponseError prefixes that mean "this server cannot serve now" rather than "this call is wrong"
_UNAVAILABLE_REPLIES = ("LOADING", "MASTERDOWN", "BUSY", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "NOAUTH")


class RedisStorage(RedisBatch, RedisOps, StoragePlugin):
    """Bytes under string keys in Redis, with optional expiry; shared by every worker and host using it.

    :param url: ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS) or ``unix:///path.sock``.
    :param password_file: read the password from this file's first line (a mounted secret).
    :param password_env: read the password from this environment variable.
    :param timeout: seconds one call may take, waiting for a connection included; None: no limit.
    :param max_connections: connections in the pool; calls beyond wait for one (within ``timeout``).
    :param key_prefix: put before every key in Redis (``"app1:"``), so that applications sharing a
        Redis database keep their keys apart.
    """

    name = "redis"
    version = "1.0.0"
    suspends = True             # every call is a round trip

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, password_file: str | None = None,
                 password_env: str | None = None, timeout: float | None = 2.0, max_connections: int = 50,
                 key_prefix: str = "") -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in redis_url.SCHEMES:
            raise ValueError(f"RedisStorage(url=...): expected a Redis URL such as redis://127.0.0.1:6379/0, "
                             f"rediss://host:6380/0 or unix:///run/redis.sock; got {_shown(url)}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):
            raise ValueError(f"RedisStorage(timeout=...): expected seconds > 0 such as 2.0, or None for no "
                             f"limit; got {timeout!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ValueError(f"RedisStorage(max_connections=...): expected an integer >= 1 such as 50; "
                             f"got {max_connections!r}")
        if not isinstance(key_prefix, str):
            raise TypeError(f"RedisStorage(key_prefix=...): expected a str such as 'app1:'; got "
                            f"{type(key_prefix).__name__}")
        for field, value in (("password_file", password_file), ("password_env", password_env)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"RedisStorage({field}=...): expected a non-empty str or None; got {value!r}")
        self.url = url
        self.password_file = password_file
        self.password_env = password_env
        self.timeout = None if timeout is None else float(timeout)
        self.max_connections = max_connections
        self.key_prefix = key_prefix
        self._client: Any = None
        self._slots = asyncio.Semaphore(max_connections)     # made again by start(), on its loop
        self._password: str | None = None
        #: None: no call yet; True: the last call reached Redis; False: it could not
        self._connected: bool | None = None
        self._last_error: str | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def initialize(self, ctx: PluginContext) -> None:
        """Make the client (no connection yet), then ping once: a Redis that is down is logged, not fatal."""
        await self.start()

    async def start(self) -> None:
        """What ``initialize()`` does, for use without a PluginManager (``async with RedisStorage(...)``)."""
        if self._client is not None:
            return
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # One immediate retry on a broken connection (a pooled one the server closed when it restarted);
        # none on a timeout, and no backoff: a Redis that is down fails the call at once, clearly.
        retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        # Each call runs under one asyncio.timeout (the pool wait, the send and the reply together), so
        # redis-py's own per-read and per-write timeouts are off (socket_timeout=None): they would bound
        # less and cost a second timer (and a task for the write) per call. A cancelled call drops its
        # connection (redis-py disconnects on any exception mid-command), so no late reply is misread.
        client = redis_url.connect(self.url, password_file=self.password_file, password_env=self.password_env,
                                   timeout=self.timeout, who="RedisStorage", max_connections=self.max_connections,
                                   retry=retry, decode_responses=False, socket_timeout=None)
        kwargs = client.connection_pool.connection_kwargs
        if kwargs.get("decode_responses"):
            await client.aclose()
            raise ValueError(f"RedisStorage(url={redis_url.describe(self.url)!r}): decode_responses=true in the "
                             "URL would turn stored bytes into str; remove it from the URL")
        self._password = kwargs.get("password")
        self._client = client
        # as many calls in flight as the pool has connections (a max_connections in the URL wins, as redis-py reads it)
        self._slots = asyncio.Semaphore(client.connection_pool.max_connections)
        self._closed = False
        try:
            async with asyncio.timeout(self.timeout):
                await client.ping()
        except Exception as exc:
            self._connected = False             # so that _failed does not log it a second time
            error = self._failed("ping", exc)
            log.warning("%s; the engine starts anyway, and each call raises until Redis answers", error)
        else:
            self._connected = True

    async def shutdown(self) -> None:
        """Close the client and its pool."""
        client, self._client = self._client, None
        self._closed = True
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> RedisStorage:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    # -- the StoragePlugin contract ----------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value of *key*, or None if absent or expired."""
        k = self._key(key)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    value: bytes | None = await client.get(k)
        except Exception as exc:
            raise self._failed("get", exc) from exc
        if self._connected is not True:
            self._reached()
        return value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store *value* under *key*, for *ttl* seconds or until deleted.

        :raises TypeError: if *value* is not bytes (encode text first).
        :raises ValueError: if *ttl* is not a positive number of seconds (at most about 146 billion years).
        """
        k = self._key(key)
        data = check_value("RedisStorage", key, value)
        ms = self._ms("set", key, ttl)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    if ms is None:
                        await client.set(k, data)
                    else:
                        await client.set(k, data, px=ms)
        except Exception as exc:
            raise self._failed("set", exc) from exc
        if self._connected is not True:
            self._reached()

    async def delete(self, key: str) -> bool:
        """Remove *key*; True if it was there (and not expired)."""
        k = self._key(key)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    n = await client.delete(k)
        except Exception as exc:
            raise self._failed("delete", exc) from exc
        if self._connected is not True:
            self._reached()
        return bool(n)

    async def exists(self, key: str) -> bool:
        """Whether *key* holds a value that has not expired."""
        k = self._key(key)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    n = await client.exists(k)
        except Exception as exc:
            raise self._failed("exists", exc) from exc
        if self._connected is not True:
            self._reached()
        return bool(n)

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make *key* expire *ttl* seconds from now, or never (None); False if absent or expired.

        :raises ValueError: if *ttl* is not a positive number of seconds or None.
        """
        k = self._key(key)
        ms = self._ms("expire", key, ttl)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    if ms is not None:
                        found = bool(await client.pexpire(k, ms))
                    else:
                        # PERSIST answers 0 both for "no key" and "no expiry": ask EXISTS in the same MULTI
                        async with client.pipeline(transaction=True) as pipe:
                            pipe.exists(k)
                            pipe.persist(k)
                            present, _ = await pipe.execute()
                        found = bool(present)
        except Exception as exc:
            raise self._failed("expire", exc) from exc
        if self._connected is not True:
            self._reached()
        return found

    async def ttl(self, key: str) -> float | None:
        """Seconds until *key* expires; None if absent or expired, ``math.inf`` if it never expires."""
        k = self._key(key)
        client = self._client or self._not_started()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    ms = int(await client.pttl(k))
        except Exception as exc:
            raise self._failed("ttl", exc) from exc
        if self._connected is not True:
            self._reached()
        if ms == -2:
            return None
        if ms == -1:
            return math.inf
        return max(0.0, ms / 1000)

    # -- what users see -----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Description, the URL (password hidden), whether the last call reached Redis, and its last error."""
        return {
            **super().metadata(),
            "url": redis_url.describe(self.url),
            "connected": self._connected is True and self._client is not None,
            "last_error": self._last_error,
            "timeout": self.timeout,
            "max_connections": self.max_connections,
            "key_prefix": self.key_prefix,
        }

    def health(self) -> dict[str, Any] | None:
        """Degraded while its last call could not reach Redis (the overall health with it)."""
        if self._connected is False:
            return {"status": "degraded",
                    "reason": f"cannot reach Redis at {redis_url.describe(self.url)}: {self._last_error}"}
        return {"status": "ok", "reason": f"Redis at {redis_url.describe(self.url)}"} if self._connected else None

    def __repr__(self) -> str:
        return f"RedisStorage({redis_url.describe(self.url)!r})"

    # -- helpers -------------------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        # Encoded here, not by redis-py: any str maps to one Redis key (lone surrogates too)
        return (self.key_prefix + check_key("RedisStorage", key)).encode("utf-8", "surrogatepass")

    def _ms(self, call: str, key: str, ttl: Any) -> int | None:
        seconds = check_ttl("RedisStorage", call, key, ttl)
        if seconds is None:
            return None
        ms = math.ceil(seconds * 1000)      # at least as long as asked, and never 0 (no expiry to Redis)
        if ms > MAX_TTL_MS:
            raise ValueError(f"RedisStorage.{call}({key!r}, ..., ttl=...): at most {MAX_TTL_MS // 1000} seconds "
                             f"(Redis's limit), or None for no expiry; got {ttl!r}")
        return ms

    def _not_started(self) -> Any:
        what = "was shut down" if self._closed else "is not started"
        raise StorageUnavailableError(
            f"RedisStorage ({redis_url.describe(self.url)}) {what}: register it with a PluginManager "
            "(manager.register(RedisStorage(...)); await manager.initialize_all()) or use "
            "'async with RedisStorage(...) as store'", plugin_name=self.name)

    def _reached(self) -> None:
        if self._connected is False:
            log.warning("RedisStorage (%s): Redis answers again; calls go through", redis_url.describe(self.url))
        self._connected = True

    def _failed(self, call: str, exc: BaseException) -> Exception:
        """The error *call* raises for *exc* (redis-py's, or a timeout), its message free of the password."""
        from redis import exceptions as rx

        where = f"RedisStorage ({redis_url.describe(self.url)}): {call}"
        down = True
        if isinstance(exc, (asyncio.TimeoutError, rx.TimeoutError)):
            what = (f"no answer within timeout={self.timeout} s; is Redis overloaded or the network slow? "
                    "Raise timeout, or max_connections if many calls wait")
        elif isinstance(exc, rx.AuthenticationError) and self._password is None:
            what = (f"Redis asks for a password ({self._scrub(exc)}); give it with password_file or "
                    "password_env")
        elif isinstance(exc, rx.AuthenticationError):
            what = (f"Redis refused the password ({self._scrub(exc)}); check password_file, password_env or "
                    "the URL's user")
        elif isinstance(exc, rx.ConnectionError) and "SSL" in str(exc):
            what = (f"cannot reach Redis over TLS ({self._scrub(exc)}); check the URL's TLS options "
                    "(ssl_ca_certs=..., ssl_certfile=..., ssl_keyfile=... in its query)")
        elif isinstance(exc, rx.ConnectionError):
            what = (f"cannot reach Redis ({self._scrub(exc)}); start redis-server or fix the URL. Calls "
                    "reconnect by themselves once Redis answers")
        elif isinstance(exc, rx.OutOfMemoryError):
            return StorageFullError(f"RedisStorage ({redis_url.describe(self.url)}) is full: {call} refused "
                                    f"({self._scrub(exc)}); raise Redis's maxmemory, set a ttl, or pick an "
                                    "eviction policy (maxmemory-policy)")
        elif isinstance(exc, rx.ResponseError) and str(exc).startswith("WRONGTYPE"):
            self._last_error = message = (f"{where}: Redis refused it ({self._scrub(exc)}); a key of another type "
                                          "(written by another client): use key_prefix to keep covet-pipe's keys apart")
            wrong = WrongTypeError(message, plugin_name=self.name)
            wrong.reply = str(exc)
            return wrong
        elif isinstance(exc, rx.ResponseError) and str(exc).split(" ", 1)[0] in _UNAVAILABLE_REPLIES:
            what = f"Redis cannot serve it now ({self._scrub(exc)})"
        elif isinstance(exc, rx.ResponseError):
            down = False
            what = (f"Redis refused it ({self._scrub(exc)}); a key of another type (written by another client) "
                    "answers WRONGTYPE: use key_prefix to keep covet-pipe's keys apart")
        elif isinstance(exc, StorageError):
            return exc
        else:
            down = False
            what = f"failed: {type(exc).__name__}: {self._scrub(exc)}"
        message = f"{where}: {what}"
        self._last_error = message
        if down:
            if self._connected is not False:
                log.warning("%s", message)
            self._connected = False
            return StorageUnavailableError(message, plugin_name=self.name)
        return StorageError(message, plugin_name=self.name)

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return printable(text, 300)


def _shown(url: Any) -> str:
    return repr(redis_url.describe(url)) if isinstance(url, str) else f"{type(url).__name__}"
