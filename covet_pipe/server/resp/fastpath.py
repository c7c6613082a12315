"""The fast path of a RESP connection: commands no plugin wraps run straight against the engine.

When no plugin lists "resp" (the chain for the protocol is empty and ready) and the storage engine
declares ``suspends = False`` (MemoryStorage), the chain would only call the handler, so a batch of
commands (one read's) skips it: no scope dict, no pipeline call, no handler coroutine; each command's
coroutine is stepped once with ``send(None)``. GET and a plain SET call the engine themselves, with the
replies of ``commands.cmd_get``/``cmd_set``; when the engine has a synchronous core (``sync_core``:
MemoryStorage's ``get_now``/``set_now``) they call that, with no coroutine, and a run of them in a batch
is answered by a compiled loop; so are INCR/DECR/INCRBY/DECRBY, MGET, MSET and MSETNX when the engine's
``sync_ops`` says its ``incr_by_now``/``get_many_now``/``set_many_now`` are its own calls (``_resp_direct.pxi``: name, key and reply in C, one call into the engine
each). A multi-key command runs as one (with no plugin, its per-key
checks would pass). The engine's calls still go through the manager's counting view. A call that waits
after all (an engine that said it would not) is finished in a Task, in order, as a suspending command is.
"""

from __future__ import annotations

from typing import Any

from covet_pipe._core import resume
from covet_pipe.server.resp._resp import answer_plain as _answer_plain, plain_core as _plain_core
from covet_pipe.server.resp._resp import run_plain as _run_plain
from covet_pipe.server.resp.codec import NULL2, NULL3, OK
from covet_pipe.server.resp.commands import COMMANDS, Command

__all__ = ["TASK", "INLINE", "DIRECT", "batch_mode", "run", "run_plain", "answer_now"]

_GET = COMMANDS[b"get"]
_SET = COMMANDS[b"set"]
#: the commands the compiled loop answers, in the order it names them to ``failed`` (``_resp_direct.pxi``)
_CMDS = tuple(COMMANDS[name] for name in (b"get", b"set", b"incr", b"decr", b"incrby", b"decrby",
                                          b"mget", b"mset", b"msetnx"))
#: those beyond GET and SET, answered when the engine has ``sync_ops``
_OPS = frozenset(_CMDS[2:])


#: how a batch (one read's commands) runs: each command in a Task, stepped inline through the chain, or
#: straight against the engine (the fast path)
TASK, INLINE, DIRECT = 0, 1, 2


def batch_mode(conn: Any, handler: Any) -> int:
    """How *conn*'s next batch runs: DIRECT when its pipeline serves *handler* with no plugin on "resp",
    INLINE when no hook on "resp" can wait, else TASK; TASK too when the engine may suspend (or is missing).

    What the chain snapshot allows is decided once per snapshot (cached on *conn*); the engine is looked up
    per batch (an unloaded or reloaded engine does not swap the chain's snapshot), what it can do once per
    engine object.
    """
    pipeline = conn.pipeline
    chain = pipeline.chain
    snap = chain.current
    if snap is not conn._snap:
        conn._snap = snap
        conn._snap_mode = (DIRECT if not snap.segments("resp")
                           else TASK if snap.may_suspend("resp") else INLINE)
    mode: int = conn._snap_mode
    if mode == TASK:
        return TASK
    if mode == DIRECT and (not chain.ready or pipeline.app is not handler):
        mode = INLINE
    try:
        engine = conn.storage()
        if engine is not conn._core_of:     # what the engine is, decided once per engine (view) object
            conn._core_of = None
            conn._suspends = getattr(engine, "suspends", True)
    except Exception:
        return TASK                     # no engine: the command itself says so, from a Task
    if conn._suspends:
        return TASK
    if engine is not conn._core_of:
        conn._core_of = engine
        conn._core = getattr(engine, "sync_core", False) is True
        conn._ops = conn._core and getattr(engine, "sync_ops", False) is True
        # its synchronous calls, fetched once (a reloaded or another engine is another object: fetched anew)
        conn._plain = _plain_core(engine, conn.failed, _CMDS, conn._ops) if conn._core else None
    return mode


def run(conn: Any, cmd: Command, args: list[bytes], fresh: Any) -> bytes | None:
    """Run *cmd* on the fast path: its reply, or None when it waited and a Task finishes it
    (*fresh* is the connection's "the coroutine has not started" marker)."""
    kind = 0
    if cmd is _GET:                     # (with a synchronous core, run_plain took it already)
        coro = conn._engine.get(args[1].decode("latin-1"))
        kind = 1
    elif cmd is _SET and len(args) == 3:
        coro = conn._engine.set(args[1].decode("latin-1"), args[2], None)
        kind = 2
    else:
        coro = cmd.run(conn, args)
    try:
        yielded = coro.send(None)           # in conn.context: the batch runs in it
    except StopIteration as stop:
        if kind == 0:
            reply: bytes = stop.value
            return reply
        return _engine_reply(kind, stop.value, conn.proto)
    except Exception as exc:
        return conn.failed(cmd, exc)  # type: ignore[no-any-return]
    # the engine waited after all (not as it said): a Task finishes the command
    conn._busy = True
    conn._engine = None
    conn._mode = TASK
    if kind:
        coro = _engine_call(kind, coro, yielded, conn.proto)
        yielded = fresh
    conn._task = conn.loop.create_task(conn._finish(cmd, coro, yielded), context=conn.context)
    return None


def answer_now(conn: Any, cmd: Command, args: list[bytes]) -> bytes | None:
    """The reply of *cmd* (reached through the chain, in a batch stepped inline) straight from the engine's
    synchronous core when it is a plain GET or SET, or (with ``sync_ops``) INCR, DECR, INCRBY, DECRBY, MGET,
    MSET or MSETNX (``_resp.answer_plain``), else None. A multi-key command reaches here once, after the
    chain checked each of its keys."""
    if conn._core and conn._mode != TASK and (cmd is _GET or cmd is _SET or (cmd in _OPS and conn._ops)):
        return _answer_plain(args, conn._plain, conn.proto)
    return None


def run_plain(conn: Any, queue: Any, out: list[bytes], limit: int) -> int:
    """The plain GETs and SETs (and with ``sync_ops`` the counters, MGET, MSET, MSETNX) at the head of *queue*,
    answered by the compiled loop from the engine's synchronous core (``_resp.run_plain``), their replies
    appended to *out*: the bytes added, 0 when the next command is another one."""
    return _run_plain(queue, out, conn._plain, conn.proto, limit)


def _engine_reply(kind: int, value: Any, proto: int) -> bytes:
    """The reply of the fast path's own GET (kind 1: the value) or SET (kind 2)."""
    if kind == 2:
        return OK
    if value is None:
        return NULL3 if proto == 3 else NULL2
    return b"$%d\r\n%s\r\n" % (len(value), value)


async def _engine_call(kind: int, coro: Any, yielded: Any, proto: int) -> bytes:
    """A fast-path engine call that waited after all, finished in a Task."""
    return _engine_reply(kind, await resume(coro, yielded), proto)
