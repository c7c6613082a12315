"""MULTI/EXEC/DISCARD/WATCH/UNWATCH: a connection's transaction, atomic over the storage engine.

Between MULTI and EXEC a command is checked (known, right number of words) and queued (``+QUEUED``);
a command that fails the check is answered with its error and EXEC then answers ``-EXECABORT``, as
redis does. EXEC runs in two steps:

1. every queued command runs the middleware chain for its key(s), so a guard can refuse one: its
   slot of EXEC's array holds the refusal (``-NOPERM ...``) and the others still run;
2. the commands the chain let through run inside the engine's :meth:`StoragePlugin.atomic`, with no
   other client's command in between; a runtime error (``-ERR value is not an integer...``) is that
   command's slot, as in redis.

WATCH records each key's :meth:`StoragePlugin.key_version`; EXEC answers a null array, running nothing,
when one changed. An engine without ``atomic`` makes EXEC answer ``-EXECABORT`` naming it, and runs
nothing: queued writes never land one by one.
"""

from __future__ import annotations

from typing import Any

from covet_pipe.server.resp.codec import OK, encode_error
from covet_pipe.server.resp.commands import COMMANDS, Command, unknown_command, wrong_arity

__all__ = ["Transaction", "intercept"]

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
    """A transaction's part in running *args*: a reply, EXEC's coroutine, or None (run it as usual)."""
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
            conn.watched = None
            return OK
        return None
    if name == b"exec":
        if len(args) != 1:
            tx.dirty = True
            return wrong_arity("exec")
        conn.tx = None
        watched, conn.watched = conn.watched, None
        if tx.dirty:
            return EXECABORT
        return _exec(conn, tx, watched)
    if name == b"discard":
        if len(args) != 1:
            tx.dirty = True
            return wrong_arity("discard")
        conn.tx = None
        conn.watched = None
        return OK
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


def _watch(conn: Any, args: list[bytes]) -> bytes | Any:
    async def watch() -> bytes:
        store = conn.storage()
        watched = conn.watched or {}
        for key in args[1:]:
            k = key.decode("latin-1")
            if k not in watched:
                watched[k] = await store.key_version(k)
        conn.watched = watched
        return OK
    return watch()


async def _exec(conn: Any, tx: Transaction, watched: dict[str, Any] | None) -> bytes:
    replies: list[bytes | None] = []
    for cmd, args in tx.queued:               # 1. the chain, key by key: a refusal takes the slot
        keys = cmd.keys(args)
        refused = None
        for key in keys:
            refused = await conn.check_chain(cmd, args, key) or None
            if refused is not None:
                break
        replies.append(refused)
    store = conn.storage()

    async def batch() -> bytes:               # 2. the engine's atomic batch
        if watched:
            for key, version in watched.items():
                if await store.key_version(key) != version:
                    return b"_\r\n" if conn.proto == 3 else b"*-1\r\n"
        out = []
        for (cmd, args), refused in zip(tx.queued, replies):
            if refused is not None:
                out.append(refused)
                continue
            try:
                out.append(await cmd.run(conn, args))
            except Exception as exc:
                out.append(conn.failed(cmd, exc))
        return b"*%d\r\n" % len(out) + b"".join(out)

    try:
        result: bytes = await store.atomic(batch)
    except NotImplementedError as exc:
        return encode_error(f"EXECABORT Transaction discarded: {exc}")
    return result


async def _unused(conn: Any, args: list[bytes]) -> bytes:   # intercept() answers these
    return OK


# known names for the parser's detection and COMMAND; intercept() checks their arity
for _name in ("multi", "exec", "discard", "watch", "unwatch"):
    COMMANDS[_name.encode()] = Command(_name, -1, _unused)
