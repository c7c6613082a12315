"""The plugin model: base classes every Python plugin derives from, and what a plugin instance is."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable

from covet_pipe._core import MiddlewareAction, Request, RequestContext, Response
from covet_pipe.storage_compound import CompoundOps, StorageOp

if TYPE_CHECKING:
    from covet_pipe.context import PluginContext

__all__ = [
    "Plugin",
    "MiddlewarePlugin",
    "AuthPlugin",
    "StoragePlugin",
    "StorageOp",
    "ProtocolPlugin",
    "MiddlewareAction",
    "plugin_kinds",
    "middleware_style",
    "is_sandboxed",
    "overridden_hook",
]

CallNext = Callable[[Request], Awaitable[Response]]


class Plugin(ABC):
    """Base of every plugin: a name, a version, dependencies and a lifecycle.

    Class attributes declare them (``name = "x"``); properties work as well.
    """

    #: unique name; letters, digits, ``_``, ``-`` and ``.``
    name: str | None = None
    #: PEP 440 version
    version: str | None = None
    #: lower runs first; ties broken by name
    priority: int = 1000
    #: PEP 440 constraints such as ``"jwt_handler>=1.0,<2"``
    dependencies: Iterable[str] = ()
    #: ``"closed"``: a failure answers 500; ``"open"``: a failure skips this plugin
    failure_policy: str = "closed"
    #: the protocols whose requests this plugin sees
    protocols: Iterable[str] = frozenset({"http"})

    async def initialize(self, ctx: PluginContext) -> None:
        """Called once, in dependency order, before the plugin serves."""

    async def shutdown(self) -> None:
        """Called once, in reverse dependency order, after the plugin stopped serving."""

    def export_state(self) -> Any:
        """JSON-safe state a reload hands to the new version (None: nothing to hand on).

        Called on the running version after the new one initialised, just before the
        swap; may be ``async``. The value goes through JSON on its way, so the new
        version gets plain dicts, lists, strings, numbers, booleans and None.
        """
        return None

    def import_state(self, state: Any) -> Awaitable[None] | None:
        """Take the state the old version exported (only called when it exported some); may be ``async``."""

    def metadata(self) -> dict[str, Any]:
        """Descriptive data shown by ``list_plugins()``."""
        doc = inspect.getdoc(type(self)) or ""
        return {"description": doc.split("\n", 1)[0]}

    def health(self) -> dict[str, Any] | None:
        """The plugin's own view of its health, for ``get_health_status()``: None (nothing to add), or
        ``{"status": "ok" | "degraded", "reason": "..."}`` (a backend it cannot reach: degraded, and the
        overall status with it). Called on every health request and dashboard tick: no I/O, no waiting."""
        return None


class MiddlewarePlugin(Plugin):
    """A plugin on the request path.

    **Hook style** (the fast path): ``process_request(request, ctx)`` returns
    None / ``MiddlewareAction.CONTINUE`` to go on, or ``MiddlewareAction.respond``
    / ``reject`` to answer now; ``process_response(response, ctx)`` edits the
    response, in reverse order, for every plugin whose request hook ran, including
    one that answered (its response hook sees its own answer). Either may be
    ``def`` or ``async def``.

    **call_next style**: ``async def process_request(self, request,
    call_next) -> Response``. Chosen when the second parameter is named
    ``call_next``, or by ``style = "call_next"``.
    """

    #: ``None``: decided from process_request's signature; or ``"hook"`` / ``"call_next"``
    style: str | None = None
    #: True: the request body is read before this plugin runs and is in ``request.body``
    needs_body: bool = False
    #: hook style: the route paths its hooks run for, e.g. ``("/metrics",)`` (exactly) or ``("/api/",)``
    #: (everything under it); the core skips the plugin elsewhere without calling it. None: every path
    paths: tuple[str, ...] | None = None

    def process_request(self, request: Request, ctx: RequestContext) -> Any:
        """Request hook; the default goes on (and is skipped by the core)."""
        return None

    def process_response(self, response: Response, ctx: RequestContext) -> Any:
        """Response hook; the default changes nothing (and is skipped by the core)."""
        return None


class AuthPlugin(Plugin):
    """An authentication provider; a guard middleware calls it."""

    @abstractmethod
    async def authenticate(self, credentials: dict[str, Any]) -> dict[str, Any] | None:
        """The user for these credentials, or None."""

    @abstractmethod
    async def authorize(self, user: dict[str, Any], resource: str, action: str) -> bool:
        """Whether *user* may do *action* on *resource*."""


class StoragePlugin(CompoundOps, Plugin):
    """A key-value storage engine.

    Required: ``get``, ``set``, ``delete``, ``exists``. The rest is optional; the compound operations
    (``set_with``, ``get_ex``, ``expire_with``, ``scan``...) have defaults built from the basic calls, in
    :mod:`covet_pipe.storage_compound`.
    """

    #: False when no call ever waits (an in-process engine): protocols may then run it inline
    suspends: bool = True

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Make *key* expire *ttl* seconds from now (``None``: never); False if there is no such key.

        Optional: engines without expiry leave it out, and RESP's EXPIRE then answers an error.
        """
        raise NotImplementedError(f"storage engine {type(self).__name__} does not support expire(); "
                                  "implement expire(key, ttl) and ttl(key) to serve EXPIRE and TTL")

    async def ttl(self, key: str) -> float | None:
        """Seconds until *key* expires: ``None`` if there is no such key, ``math.inf`` if it never does.

        (RESP's TTL maps these to -2 and -1.) Optional, like :meth:`expire`.
        """
        raise NotImplementedError(f"storage engine {type(self).__name__} does not support ttl(); "
                                  "implement expire(key, ttl) and ttl(key) to serve EXPIRE and TTL")

    # Read-modify-write operations (optional): each is atomic in the engine, so the RESP commands
    # built on them (INCR, APPEND, GETSET, GETDEL, MSET, MSETNX, KEYS, FLUSHDB...) are atomic too.
    # An engine leaves out what it cannot do atomically; the command then answers an error naming
    # the command and the engine. Values that are not numbers raise storage.errors.NotANumberError.

    async def incr_by(self, key: str, delta: int) -> int:
        """Add *delta* to the integer stored at *key* (absent: 0) and return the result (64-bit signed)."""
        raise _unsupported(self, "incr_by(key, delta)", "INCR, INCRBY, DECR and DECRBY")

    async def incr_by_float(self, key: str, delta: bytes) -> bytes:
        """Add *delta* (a number's text, such as ``b"10.5"``) to the number stored at *key* (absent: 0).

        Returns the new value as stored (text).
        """
        raise _unsupported(self, "incr_by_float(key, delta)", "INCRBYFLOAT")

    async def append(self, key: str, value: bytes) -> int:
        """Append *value* to *key*'s value (absent: empty, no expiry); the new length."""
        raise _unsupported(self, "append(key, value)", "APPEND")

    async def get_set(self, key: str, value: bytes) -> bytes | None:
        """Store *value* without expiry and return the old value (None if there was none)."""
        raise _unsupported(self, "get_set(key, value)", "GETSET and SET ... GET")

    async def get_del(self, key: str) -> bytes | None:
        """Remove *key* and return its value (None if there was none)."""
        raise _unsupported(self, "get_del(key)", "GETDEL")

    async def set_many(self, items: list[tuple[str, bytes]], only_new: bool = False) -> bool:
        """Store every pair without expiry, all at once; with *only_new*, nothing if any key exists.

        True when stored (MSET; MSETNX answers 0 on False).
        """
        raise _unsupported(self, "set_many(items, only_new)", "MSET and MSETNX")

    async def keys(self, pattern: str = "*") -> list[str]:
        """The live keys matching *pattern* (redis glob: ``*``, ``?``, ``[a-z]``, ``\\`` escapes)."""
        raise _unsupported(self, "keys(pattern)", "KEYS, SCAN, DBSIZE and INFO's keyspace")

    async def flush(self) -> None:
        """Remove every key of this engine."""
        raise _unsupported(self, "flush()", "FLUSHDB and FLUSHALL")

    # Transactions (optional): RESP's MULTI/EXEC and WATCH.

    async def atomic(self, ops: list[StorageOp], watch: object | None = None) -> list[object] | None:
        """Run every op (``getattr(self, op.method)(*op.args, **op.kwargs)``) with no other writer's call
        in between, and return each one's result, or the exception it raised, in order.

        With *watch* (what :meth:`watch` returned): None, running nothing, if a watched key was written
        since; the watch is used up either way. EXEC runs its queued commands this way.
        """
        raise _unsupported(self, "atomic(ops, watch)", "MULTI/EXEC transactions")

    async def watch(self, keys: list[str], held: object | None = None) -> object:
        """Start watching *keys* (adding them to *held*, a watch this returned before); the watch.

        This default records each key's :meth:`key_version`; :meth:`atomic` compares them.
        """
        versions: dict[str, object] = dict(held) if isinstance(held, dict) else {}
        for key in keys:
            if key not in versions:
                versions[key] = await self.key_version(key)
        return versions

    async def unwatch(self, held: object) -> None:
        """Give up a watch that :meth:`atomic` will not use (UNWATCH, DISCARD, the client gone)."""

    async def key_version(self, key: str) -> object:
        """A token for *key*'s current value: equal (``==``) tokens mean it was not written in between."""
        raise _unsupported(self, "key_version(key)", "WATCH")


def _unsupported(engine: object, method: str, commands: str) -> NotImplementedError:
    return NotImplementedError(f"storage engine {type(engine).__name__} does not support {method}, so it "
                               f"cannot serve {commands}; implement it (see docs/protocols.md) or use "
                               "MemoryStorage or RedisStorage")


class ProtocolPlugin(Plugin):
    """A wire protocol for covet-pipe's own listener (the contract is in covet_pipe.protocol).

    A *layer* (``layer = True``, such as PROXY) consumes a prefix of the stream and
    hands the rest on; a *terminal* protocol claims the connection and turns its
    messages into requests that run the middleware chain under ``protocol_name``.
    """

    #: the name requests of this protocol carry (``scope["type"]``, ``ctx.protocol``)
    protocol_name: str | None = None
    #: True: unwrap a prefix and hand on; False: own the connection once detected
    layer: bool = False
    #: protocols look at the first bytes before any later plugin
    priority: int = 100

    def supported_protocols(self) -> list[str]:
        """Protocol names this plugin speaks, such as ``["http/1.1"]``."""
        return [self.protocol_name] if self.protocol_name else []

    def detect(self, data: bytes) -> str:
        """``MATCH``, ``NEED_MORE`` or ``NO`` for a connection's first bytes."""
        return "no"

    def unwrap(self, data: bytes, conn: Any) -> int | None:
        """A layer: bytes consumed from *data* (None: need more); may record facts on *conn*."""
        raise NotImplementedError(f"{type(self).__name__} is not a layer protocol")

    def connection_protocol(self, conn: Any, server: Any) -> Any:
        """An ``asyncio.Protocol`` that owns the connection, or None to use ``handle_connection``."""
        return None

    async def handle_connection(self, reader: Any, writer: Any, protocol: str) -> None:
        """Own a whole connection through asyncio streams."""
        raise NotImplementedError(f"{type(self).__name__} does not own whole connections")

    async def parse_request(self, data: bytes) -> Request:
        """Bytes from the wire into the Request the middleware chain sees."""
        raise NotImplementedError(f"{type(self).__name__} does not parse single messages")

    async def serialize_response(self, response: Response) -> bytes:
        """A Response into bytes for the wire."""
        raise NotImplementedError(f"{type(self).__name__} does not serialize single messages")


_KINDS = (
    ("middleware", MiddlewarePlugin),
    ("auth", AuthPlugin),
    ("storage", StoragePlugin),
    ("protocol", ProtocolPlugin),
)


def plugin_kinds(plugin: object) -> tuple[str, ...]:
    """The kinds a plugin instance is (``("middleware", "auth")`` ...)."""
    kinds = tuple(k for k, cls in _KINDS if isinstance(plugin, cls))
    if getattr(plugin, "_covet_native", False):
        kinds += ("native",)
    if is_sandboxed(plugin):
        kinds += ("sandboxed",)
    return kinds or ("plugin",)


def is_sandboxed(plugin: object) -> bool:
    """Whether *plugin* runs in sandboxed helper processes (it is the host's proxy of one)."""
    return bool(getattr(plugin, "_covet_sandboxed", False))


def middleware_style(plugin: MiddlewarePlugin) -> str:
    """``"hook"`` or ``"call_next"``: explicit ``style``, else the name of the second parameter."""
    style = getattr(plugin, "style", None)
    if style is not None:
        return str(style)
    try:
        params = list(inspect.signature(plugin.process_request).parameters)
    except (TypeError, ValueError):
        return "hook"
    return "call_next" if len(params) >= 2 and params[1] == "call_next" else "hook"


def overridden_hook(plugin: object, name: str) -> Any:
    """The bound hook *name* if the plugin's class overrides MiddlewarePlugin's, else None (the core skips it)."""
    if getattr(type(plugin), name, None) is getattr(MiddlewarePlugin, name):
        return None
    return getattr(plugin, name)
