"""MULTI/EXEC/DISCARD/WATCH/UNWATCH: a connection's transaction, atomic over the storage engine.

Between MULTI and EXEC a command is checked (known, right number of words) and queued (``+QUEUED``);
a command that fails the check is answered with its error and EXEC then answers ``-EXECABORT``, as
redis does. EXEC runs in three steps:

1. every queued command runs the middleware chain for its key(s), so a guard can refuse one: its
   slot of EXEC's array holds the refusal (``-NOPERM ...``) and the others still run;
2. each command the chain let through runs up to its one call of the storage engine, against a
   stand-in engine that records the call (a :class:`StorageOp`) instead of making it; a command
   that answers without one (a syntax error, PING) has its reply already;
3. the recorded calls go to the engine's :meth:`StoragePlugin.atomic` together, with no other
   writer in between (MemoryStorage: without yielding; RedisStorage: one Redis MULTI/EXEC), and each
   command resumes with its call's result, or its exception, to encode its reply: a runtime error
   (``-ERR value is not an integer...``) is that command's slot, as in redis.

WATCH hands the keys to the engine's :meth:`StoragePlugin.watch` and keeps what it returns (with the
engine) in ``conn.watched`` until EXEC gives it to ``atomic``, or UNWATCH, DISCARD or the connection's
end gives it back (:meth:`StoragePlugin.unwatch`). EXEC answers a null array, running nothing, when a
watched key was written. An engine without ``atomic`` makes EXEC answer ``-EXECABORT`` naming it, and
runs nothing: queued writes never land one by one.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generator

from covet_pipe.logsafe import logger
from covet_pipe.server.resp.codec import OK, encode_error
from covet_pipe.server.resp.commands import COMMANDS, Command, unknown_command, wrong_arity
from covet_pipe.storage_compound import StorageOp

__all__ = ["Transaction", "intercept", "release"]

log = logger("covet_pipe.resp")

QUEUED = b"+QUEUED\r\n"
EXECABORT = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
#: answered by the connection itself: refused inside MULTI (and EXEC then aborts)
_NOT_IN_MULTI = frozenset((b"auth", b"hello", b"quit"))


class Transaction:
    """A connection's MULTI state: the queued commands, whether one failed its check."""

    __slots__ = ("queued", "dirty")

    def __init__(self) -> None:
        self.queued: list[tuple[Command, list[bytes]]] = []
        self.dirty = False


def intercept(conn: Any, args: list[bytes]) -> bytes | Any | None:
    """A transaction's part in running *args*: a reply, a coroutine (EXEC, WATCH...), or None (run it as usual)."""
    name = args[0].lower()
    tx: Transaction | None = conn.tx
    if tx is None:
        if name == b"multi":
            if len(args) != 1:
                return wrong_arity("multi")
            conn.tx = Transaction()
            return OK
        if name in (b"exec", b"discard"):
            return wrong_arity(name.decode()) if len(args) != 1 else \
                encode_error(f"ERR {name.decode().upper()} without MULTI")
        if name == b"watch":
            return _watch(conn, args) if len(args) >= 2 else wrong_arity("watch")
        if name == b"unwatch":
            if len(args) != 1:
                return wrong_arity("unwatch")
            return _unwatch(conn)
        return None
    if name == b"exec":
        if len(args) != 1:
            tx.dirty = True
            return wrong_arity("exec")
        conn.tx = None
        if tx.dirty:
            return _unwatch(conn, EXECABORT)
        watched, conn.watched = conn.watched, None
        return _exec(conn, tx, watched)
    if name == b"discard":
        if len(args) != 1:
            tx.dirty = True
            return wrong_arity("discard")
        conn.tx = None
        return _unwatch(conn)
    cmd = COMMANDS.get(name)
    if cmd is None:
        tx.dirty = True
        return unknown_command(args)
    if not cmd.arity_ok(len(args)):
        tx.dirty = True
        return wrong_arity(cmd.name)
    if name == b"multi":                    # answered, not queued, and EXEC still runs (as redis)
        return b"-ERR MULTI calls can not be nested\r\n"
    if name == b"watch":
        return b"-ERR WATCH inside MULTI is not allowed\r\n"
    if name in _NOT_IN_MULTI:
        tx.dirty = True
        return encode_error(f"ERR {cmd.method} inside MULTI is not allowed")
    tx.queued.append((cmd, args))
    return QUEUED


def _watch(conn: Any, args: list[bytes]) -> Any:
    async def watch() -> bytes:
        engine, held = conn.watched or (conn.storage(), None)
        conn.watched = (engine, await engine.watch([k.decode("latin-1") for k in args[1:]], held))
        return OK
    return watch()


def _unwatch(conn: Any, reply: bytes = OK) -> Any:
    """Give the connection's watch back to its engine (a coroutine), then answer *reply*."""
    watched, conn.watched = conn.watched, None
    if watched is None:
        return reply

    async def unwatch() -> bytes:
        await watched[0].unwatch(watched[1])
        return reply
    return unwatch()


def release(conn: Any) -> None:
    """The connection is gone: give its watch back to the engine (a Redis connection it pins)."""
    watched, conn.watched = conn.watched, None
    if watched is not None:
        task = asyncio.get_running_loop().create_task(_give_back(*watched))
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)


_RELEASING: set[Any] = set()


async def _give_back(engine: Any, held: Any) -> None:
    try:
        await engine.unwatch(held)
    except Exception:                       # the engine is gone or down: its pool drops the connection
        log.warning("RESP: %s could not end a departed client's WATCH", type(engine).__name__, exc_info=True)


class _Call:
    """A recorded engine call: awaiting it hands the op to EXEC, which sends back the result."""

    __slots__ = ("op",)

    def __init__(self, op: StorageOp) -> None:
        self.op = op

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)


class _Recorder:
    """The engine as a queued command sees it: its calls are recorded, its other attributes the engine's."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._engine, name)
        if name.startswith("_") or not callable(attr):
            return attr
        return lambda *args, **kwargs: _Call(StorageOp(name, args, kwargs))


class _Queued:
    """The connection as a queued command sees it: the same, with the recording engine."""

    __slots__ = ("_conn", "_engine")

    def __init__(self, conn: Any, engine: Any) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_engine", _Recorder(engine))

    def storage(self) -> Any:
        return self._engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:      # CLIENT SETNAME inside MULTI
        setattr(self._conn, name, value)


def _one_call(cmd: Command, engine: Any) -> NotImplementedError:
    return NotImplementedError(f"it needs more than one call of the storage engine {type(engine).__name__}, "
                               "so it cannot run inside MULTI; run it outside the transaction")


async def _exec(conn: Any, tx: Transaction, watched: tuple[Any, Any] | None) -> bytes:
    try:
        replies: list[bytes | None] = []
        for cmd, args in tx.queued:           # 1. the chain, key by key: a refusal takes the slot
            keys = cmd.keys(args)
            refused = None
            for key in keys:
                refused = await conn.check_chain(cmd, args, key) or None
                if refused is not None:
                    break
            replies.append(refused)
        engine = conn.storage() if watched is None else watched[0]
    except BaseException:
        if watched is not None:
            await watched[0].unwatch(watched[1])
        raise
    queued = _Queued(conn, engine)
    waiting: list[tuple[int, Command, Any]] = []
    ops: list[StorageOp] = []
    for i, ((cmd, args), refused) in enumerate(zip(tx.queued, replies)):
        if refused is not None:
            continue
        coro = cmd.run(queued, args)        # 2. up to its engine call
        try:
            step = coro.send(None)
        except StopIteration as stop:
            replies[i] = stop.value
            continue
        except Exception as exc:
            replies[i] = conn.failed(cmd, exc)
            continue
        if not isinstance(step, _Call):
            coro.close()
            replies[i] = conn.failed(cmd, RuntimeError(f"{cmd.name} awaited {step!r} inside EXEC"))
            continue
        waiting.append((i, cmd, coro))
        ops.append(step.op)
    try:                                      # 3. the engine's atomic batch
        results = await engine.atomic(ops, None if watched is None else watched[1])
    except BaseException as exc:
        for _, _, coro in waiting:
            coro.close()
        if isinstance(exc, NotImplementedError):
            return encode_error(f"EXECABORT Transaction discarded: {exc}")
        raise
    if results is None:
        for _, _, coro in waiting:
            coro.close()
        return b"_\r\n" if conn.proto == 3 else b"*-1\r\n"
    for (i, cmd, coro), result in zip(waiting, results):
        try:
            if isinstance(result, BaseException):
                coro.throw(result)
            else:
                coro.send(result)
        except StopIteration as stop:
            replies[i] = stop.value
        except Exception as exc:
            replies[i] = conn.failed(cmd, exc)
        else:
            coro.close()
            replies[i] = conn.failed(cmd, _one_call(cmd, engine))
    return b"*%d\r\n" % len(replies) + b"".join(r or b"" for r in replies)


async def _unused(conn: Any, args: list[bytes]) -> bytes:   # intercept() answers these
    return OK


# known names for the parser's detection and COMMAND; intercept() checks their arity
for _name in ("multi", "exec", "discard", "watch", "unwatch"):
    COMMANDS[_name.encode()] = Command(_name, -1, _unused)
