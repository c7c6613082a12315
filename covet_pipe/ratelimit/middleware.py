"""RateLimit: the middleware plugin that holds requests to their limits (GCRA, in memory or in Redis).

``storage="memory"`` decides in this process, without awaiting (a plain ``def`` hook). With
``storage="redis://..."`` the plugin is a :class:`RedisRateLimit` (chosen when it is made), whose
hook awaits one ``EVALSHA`` per request; the limit then holds across workers and hosts.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Mapping

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginContext, Request, RequestContext, Response
from covet_pipe.ratelimit.gcra import Decision, MemoryGCRA
from covet_pipe.ratelimit.headers import fields, policy_field, refused_fields, retry_seconds
from covet_pipe.ratelimit.keys import key_function
from covet_pipe.ratelimit.outage import Outage
from covet_pipe.ratelimit.redis_gcra import RedisGCRA
from covet_pipe.ratelimit.routes import Routes, Rule
from covet_pipe.redis_url import SCHEMES, describe

__all__ = ["RateLimit", "RedisRateLimit", "WORKERS_ENV"]

#: the number of worker processes, set by ``covet-pipe serve --workers N``'s supervisor for its workers
WORKERS_ENV = "COVET_PIPE_WORKERS"

log = logging.getLogger("covet_pipe.ratelimit")


def _is_redis(storage: Any) -> bool:
    return isinstance(storage, str) and storage.split("://", 1)[0] in SCHEMES and "://" in storage


class RateLimit(MiddlewarePlugin):
    """Holds requests to rate limits (GCRA); a request over its limit gets 429 with ``Retry-After``.

    :param limit: ``"100/second"``, or a list (``["10/second", "1000/hour"]``: every one must hold);
        for the paths no route covers (omitted with ``routes``: those are not limited).
    :param routes: ``{"/api": "100/second", "/login": ["5/minute", "20/hour"]}``: path prefixes (whole
        segments of the route path, longest first) and their limits, each with buckets of its own.
    :param key: what a bucket belongs to: ``"client"`` (the client address; the real one behind a trusted
        PROXY), ``"global"``, ``"header:x-api-key"``, ``"jwt:sub"`` (a claim of the user an auth guard
        verified), ``"path"``, or a function of the request returning a string.
    :param storage: ``"memory"`` (this process only: with ``--workers N`` each worker lets the whole limit
        through) or a Redis URL (``redis://host:6379/0``, ``rediss://``, ``unix://``): one limit across
        every worker and host.
    :param burst: requests that may come at once beyond the steady pace; 0 spaces them evenly
        (``100/second``: one per 10 ms). In any one period at most ``count + burst`` get through.
    :param failure_policy: while Redis does not answer, ``"open"`` lets requests through, ``"closed"``
        answers 503 (also what happens to a request if this plugin fails).
    :param headers: add the RateLimit fields to allowed responses too (a 429 always has them).
    :param timeout: seconds a Redis call may take before the failure policy applies.
    :param password_file, password_env: where the Redis password is, if not in the URL.
    :param key_prefix: the Redis keys' prefix.
    :param max_keys: buckets kept in memory at most (``storage="memory"``).
    :param name: the plugin name (two RateLimit plugins need two names).
    :param priority: where in the chain (default 300: after CORS and auth guards, so ``jwt:CLAIM``
        sees the verified user).
    """

    name = "rate_limit"
    version = "1.0.0"
    priority = 300

    def __new__(cls, *args: Any, **kwargs: Any) -> RateLimit:
        if cls is RateLimit and _is_redis(kwargs.get("storage", "memory")):
            cls = RedisRateLimit
        return super().__new__(cls)

    def __init__(self, limit: Any = None, *, routes: Mapping[str, Any] | None = None, key: Any = "client",
                 storage: str = "memory", burst: int = 0, failure_policy: str = "open",
                 headers: bool = True, timeout: float = 0.5, password_file: str | None = None,
                 password_env: str | None = None, key_prefix: str = "covet-pipe:rl",
                 max_keys: int = 100_000, name: str | None = None, priority: int | None = None) -> None:
        if name is not None:
            self.name = name
        if priority is not None:
            self.priority = priority
        who = self.who = f"RateLimit plugin {self.name!r}"
        self.routes = Routes(limit, routes, who)
        self.key: Callable[[Any], str] = key_function(key, who)
        self.key_spec = key if isinstance(key, str) else getattr(key, "__name__", "custom")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ValueError(f"{who}: burst={burst!r}; expected a whole number of requests >= 0, such as burst=10")
        self.burst = burst
        if failure_policy not in ("open", "closed"):
            raise ValueError(f"{who}: failure_policy={failure_policy!r}; expected 'open' (let requests through "
                             "while Redis is away) or 'closed' (answer 503)")
        self.failure_policy = failure_policy
        self.headers = bool(headers)
        if storage != "memory" and not _is_redis(storage):
            raise ValueError(f"{who}: storage={storage!r}; expected 'memory' or a Redis URL such as "
                             "'redis://127.0.0.1:6379/0'")
        if not _is_redis(storage) and type(self) is RedisRateLimit:
            raise ValueError(f"{who}: RedisRateLimit needs storage='redis://...'")
        self.storage = storage
        self.where = describe(storage) if _is_redis(storage) else "memory"
        for rule in self.routes.all:
            rule.policy = policy_field(rule.limits)
            rule.args = RedisGCRA.arguments(rule.limits, burst)
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"{who}: max_keys={max_keys!r}; expected a number of buckets >= 1")
        self.memory = MemoryGCRA(max_keys, on_evict=self._evicted)
        self.allowed = 0
        self.limited = 0
        self.outage = Outage(who, self.where, failure_policy)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"{who}: timeout={timeout!r}; expected seconds > 0, such as timeout=0.5")
        self.timeout = float(timeout)
        self.password_file = password_file
        self.password_env = password_env
        self.key_prefix = key_prefix

    # -- lifecycle ------------------------------------------------------------------------------

    async def initialize(self, ctx: PluginContext) -> None:
        workers = _workers()
        if workers > 1:
            limits = ", ".join(repr(limit.text) for rule in self.routes.all for limit in rule.limits)
            log.warning("%s: storage='memory' counts in each worker's own memory, and %d workers serve: "
                        "each lets the whole limit through, so a client gets up to %d times %s; use "
                        "storage='redis://...' for one limit across workers and hosts",
                        self.who, workers, workers, limits)

    def _evicted(self, n: int) -> None:
        log.warning("%s: more than max_keys=%d buckets in memory; the %d oldest were dropped (their clients "
                    "start afresh); raise max_keys or use storage='redis://...'", self.who,
                    self.memory.max_keys, n)

    def export_state(self) -> Any:
        """The memory buckets that hold something, by route and limits, so a reload keeps every client's count."""
        out: dict[str, Any] = {}
        rules = {str(rule.index): rule for rule in self.routes.all}
        for key, ahead in self.memory.export().items():
            index, _, value = key.partition("|")
            rule = rules.get(index)
            if rule is not None:
                entry = out.setdefault(rule.name, {"limits": [lim.text for lim in rule.limits], "keys": {}})
                entry["keys"][value] = ahead
        return {"buckets": out} if out else None

    def import_state(self, state: Any) -> None:
        """Buckets of the version before, for the routes whose limits are unchanged (others start whole)."""
        buckets = state.get("buckets") if isinstance(state, dict) else None
        if not isinstance(buckets, dict):
            return
        for rule in self.routes.all:
            entry = buckets.get(rule.name)
            if isinstance(entry, dict) and entry.get("limits") == [lim.text for lim in rule.limits]:
                self.memory.restore({f"{rule.index}|{value}": ahead for value, ahead in entry["keys"].items()})

    # -- the hooks ------------------------------------------------------------------------------

    def process_request(self, request: Request, ctx: RequestContext) -> Any:
        rule = self.routes.match(request)
        if rule is None:
            return None
        d = self.memory.decide(f"{rule.index}|{self.key(request)}", rule.limits, self.burst)
        return self._answer(d, rule, ctx)

    def _answer(self, d: Decision, rule: Rule, ctx: RequestContext) -> Any:
        if d.allowed:
            self.allowed += 1
            if self.headers:
                ctx.state["rl"] = (d, rule.policy)
            return None
        self.limited += 1
        return MiddlewareAction.reject(429, f"Too Many Requests: the limit is {d.limit.text}; retry after "
                                            f"{retry_seconds(d)} s",
                                       refused_fields(d, rule.policy))

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        got = ctx.state.get("rl")
        if got is not None:
            h = response.headers
            for field, value in fields(*got):
                h.set(field, value)

    # -- what it tells --------------------------------------------------------------------------

    def ratelimit_counts(self) -> tuple[int, int, int]:
        """(allowed, limited, backend failures) since it started: the metrics read these."""
        return self.allowed, self.limited, self.outage.failures

    def metadata(self) -> dict[str, Any]:
        return {
            "description": "Holds requests to rate limits (GCRA); 429 with Retry-After over them.",
            "storage": self.where,
            "key": self.key_spec,
            "burst": self.burst,
            "failure_policy": self.failure_policy,
            "limits": {rule.name: [limit.text for limit in rule.limits] for rule in self.routes.all},
            "allowed": self.allowed,
            "limited": self.limited,
            "backend_failures": self.outage.failures,
            "backend_down": self.outage.down,
        }

    def health(self) -> dict[str, Any] | None:
        """Degraded while its Redis cannot be reached (its failure_policy decides meanwhile)."""
        if self.outage.down:
            return {"status": "degraded", "reason": f"cannot reach {self.where}; failure_policy "
                                                    f"{self.failure_policy!r} applies"}
        return None


class RedisRateLimit(RateLimit):
    """RateLimit with its buckets in Redis (what ``RateLimit(storage="redis://...")`` makes)."""

    def __init__(self, limit: Any = None, **options: Any) -> None:
        super().__init__(limit, **options)
        self.store = RedisGCRA(self.storage, who=self.who, timeout=self.timeout,
                               password_file=self.password_file, password_env=self.password_env)
        # the bucket names' hash tag {route|key} keeps one request's buckets in one cluster slot
        self.prefix = f"{self.key_prefix}:{self.name}:"
        from redis.exceptions import RedisError
        self.errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)

    async def initialize(self, ctx: PluginContext) -> None:
        try:
            await self.store.warm()
        except self.errors as exc:       # not fatal: the failure policy applies until Redis answers
            self.outage.failed(exc)

    async def shutdown(self) -> None:
        await self.store.close()

    def export_state(self) -> Any:
        return None             # the buckets are in Redis: the next version finds them there

    async def process_request(self, request: Request, ctx: RequestContext) -> Any:
        rule = self.routes.match(request)
        if rule is None:
            return None
        outage = self.outage
        if outage.skip():
            return self._failed()
        base = f"{self.prefix}{{{rule.name}|{self.key(request)}}}:"
        try:
            d = await self.store.decide([base + limit.text for limit in rule.limits], rule.limits, self.burst,
                                        rule.args)
        except self.errors as exc:
            outage.failed(exc)
            return self._failed()
        if outage.down:
            outage.ok()
        return self._answer(d, rule, ctx)

    def _failed(self) -> Any:
        if self.failure_policy == "open":
            return None
        return MiddlewareAction.reject(503, "Rate limiter unavailable: its store does not answer; retry shortly",
                                       {"retry-after": "1"})


def _workers() -> int:
    try:
        return int(os.environ.get(WORKERS_ENV, "1"))
    except ValueError:
        return 1
