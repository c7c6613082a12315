"""One RESP connection: commands in, the middleware chain and the storage engine, replies out in order.

Commands are answered one at a time, in the order they arrived (pipelining keeps its order). Each
runs through the middleware chain (chaincall.py), or straight against the engine when no plugin wraps
it (fastpath.py). The coroutine is driven with ``send(None)``: when the chain and the storage complete without
suspending (the common case: sync hooks, an in-process store) no Task is made and the replies of one
read go out in one write; a command that suspends gets a Task and the commands after it wait.

Backpressure: reading pauses while more than ``max_pending`` commands wait, and no command runs while
the transport asked us to pause writing. A protocol error is answered after the commands before it,
then the connection closes, as redis does.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import deque
from typing import Any

from covet_pipe._core import resume
from covet_pipe.logsafe import logger
from covet_pipe.server.resp import fastpath
from covet_pipe.server.resp.chaincall import INTERNAL, ChainCall, handle
from covet_pipe.server.resp.codec import OK, CommandParser, encode_error
from covet_pipe.server.resp.commands import COMMANDS, Command, unknown_command, wrong_arity
from covet_pipe.server.resp.errors import StorageFullError
from covet_pipe.server.resp.transaction import Transaction, intercept, release

__all__ = ["RespConnection", "handle"]

log = logger("covet_pipe.resp")

_ids = itertools.count(1)

WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
NO_PASSWORD = (b"-ERR AUTH <password> called without any password configured for the default user. "
               b"Are you sure your configuration is correct?\r\n")
#: replies of one read are joined into one write up to this many bytes
FLUSH_BYTES = 64 * 1024


#: _finish's "the coroutine has not started" marker
_FRESH = object()


class RespConnection(ChainCall, asyncio.Protocol):
    """The asyncio.Protocol of one RESP connection (made by RespProtocol.connection_protocol)."""

    def __init__(self, plugin: Any, conn: Any, server: Any, pipeline: Any) -> None:
        self.plugin = plugin
        self.info = conn
        self.server = server
        self.pipeline = pipeline
        self.loop: Any = None               # the serving loop, from connection_made
        self.id = next(_ids)
        #: 2 or 3, switched by HELLO
        self.proto = 2
        self.client_name: bytes | None = None
        self.lib_info: dict[str, bytes] = {}
        self.parser = CommandParser(plugin.max_bulk_bytes, plugin.max_array_len, plugin.max_inline_bytes)
        self.transport: Any = None
        self._queue: deque[list[bytes]] = deque()
        self._busy = False                  # a command is running in a Task
        self._read_paused = False
        self._write_paused = False
        self._closing = False
        self._quit = False                  # QUIT ran (or shutdown): close once answered
        self._eof = False
        self._stopping = False              # graceful shutdown: reading stays paused
        self._auth: tuple[bytes, bytes] | None = None   # the authorization header AUTH earned
        self._status = 0
        self._body = b""
        self._handled: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._engine: Any = None            # the storage engine of the current batch
        self._snap: Any = None              # the chain snapshot _snap_mode was decided for
        self._snap_mode = fastpath.TASK     # what that snapshot allows (fastpath.batch_mode)
        self._mode = fastpath.TASK          # how the current batch runs
        self._core_of: Any = None           # the engine _core was decided for
        self._suspends = True               # whether that engine may suspend
        self._core = False                  # it has a synchronous core (fastpath.py)
        self._ops = False                   # and synchronous counters and multi-key calls
        self._plain: Any = None             # those calls, for the compiled loop (fastpath.batch_mode)
        #: MULTI's queued commands (transaction.py), and WATCH's key -> version
        self.tx: Transaction | None = None
        self.watched: dict[str, Any] | None = None
        #: this connection's contextvars context: its commands share it, other connections don't
        self.context = contextvars.copy_context()
        self._sender = self._send           # the send handed to the chain (one bound method)
        self._in_context = False            # self.context is entered (by _run, or _finish's Task)
        #: how often reading was paused because too many commands waited (for tests and stats)
        self.read_pauses = 0
        #: how often the transport asked us to stop writing (a client that does not read)
        self.write_pauses = 0

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._queue.clear()
        self.server.connections.discard(self)
        if self.watched is not None:
            release(self)                   # a watch may pin a connection of the engine

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        commands = self.parser.feed(data)
        if commands:
            self._queue.extend(commands)
        self._run()

    def pause_writing(self) -> None:
        self._write_paused = True
        self.write_pauses += 1

    def resume_writing(self) -> None:
        self._write_paused = False
        self._run()

    def eof_received(self) -> bool:
        # the client sent all it will: answer what is queued, then close
        self._eof = True
        self._run()
        return True

    # -- the command loop ----------------------------------------------------------------------

    def _run(self) -> None:
        """Run what is queued: the batch steps in this connection's context, entered once for it."""
        if self._in_context:
            self._batch()
            return
        self._in_context = True
        try:
            self.context.run(self._batch)
        finally:
            self._in_context = False

    def _batch(self) -> None:
        self._engine = None
        self._mode = fastpath.batch_mode(self, handle) if self._queue else fastpath.TASK
        out: list[bytes] = []
        size = 0
        queue = self._queue
        plain = self._mode == fastpath.DIRECT and self._core
        while queue and not self._busy and not self._write_paused and not self._closing:
            added = fastpath.run_plain(self, queue, out, FLUSH_BYTES - size) if plain and self.tx is None else 0
            if added:                       # plain GETs and SETs, answered by the compiled loop
                size += added
            else:
                reply = self._execute(queue.popleft())
                if reply is None:           # it suspended; its Task writes it and resumes us
                    break
                out.append(reply)
                size += len(reply)
            if self._quit:                  # QUIT answers, then closes: what came after it is dropped
                queue.clear()
            elif size >= FLUSH_BYTES:       # write now, so that pause_writing() can stop us
                self.transport.write(b"".join(out))
                out.clear()
                size = 0
        if out and not self._closing:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        if not self._busy and not self._closing and not queue:
            if self.parser.error is not None:
                self.transport.write(encode_error("ERR " + self.parser.error))
                self._close()
                return
            if self._quit or self._eof:
                self._close()
                return
        self._flow()

    def _flow(self) -> None:
        pending = len(self._queue)
        limit = self.plugin.max_pending
        if not self._read_paused and pending >= limit and not self._closing:
            self._read_paused = True
            self.read_pauses += 1
            self.transport.pause_reading()
        elif self._read_paused and pending <= limit // 2 and not self._stopping:
            self._read_paused = False
            if not self._closing:
                self.transport.resume_reading()

    def _close(self) -> None:
        if not self._closing:
            self._closing = True
            self.transport.close()

    def quit_after_reply(self) -> None:
        self._quit = True

    def _execute(self, args: list[bytes]) -> bytes | None:
        cmd = COMMANDS.get(args[0].lower())
        tx: Any = None
        if cmd is None or self.tx is not None or cmd.run is _TX_RUN:
            tx = intercept(self, args)      # MULTI and what it queues: transaction.py
            if isinstance(tx, bytes):
                return tx
        if cmd is None:
            return unknown_command(args)
        if not cmd.arity_ok(len(args)):
            return wrong_arity(cmd.name)
        if cmd.run is _TX_RUN:
            coro = tx                       # EXEC's or WATCH's coroutine
        elif cmd.local:
            coro = cmd.run(self, args)
        elif self._mode == fastpath.DIRECT:
            return fastpath.run(self, cmd, args, _FRESH)
        elif cmd.multi_key and len(args) > 1 + cmd.key_step:
            coro = self._multi(cmd, args)
        else:
            coro = self._call(cmd, args, args[cmd.key] if cmd.key else b"")
        self._status = 0
        self._handled = None
        if not self._inline(cmd):
            # something on the way may wait (an async hook, a storage engine doing I/O, the auth
            # provider): a real Task, so asyncio.timeout(), current_task() and cancellation work
            self._busy = True
            self._engine = None
            self._task = self.loop.create_task(self._finish(cmd, coro, _FRESH), context=self.context)
            return None
        try:
            yielded = coro.send(None)           # in self.context: _run entered it
        except StopIteration as stop:
            return stop.value if stop.value is not None else self._reply()
        except Exception as exc:
            return self.failed(cmd, exc)
        self._busy = True
        self._engine = None                 # the loop runs other code before this command goes on
        self._mode = fastpath.TASK
        self._task = self.loop.create_task(self._finish(cmd, coro, yielded), context=self.context)
        return None

    def _inline(self, cmd: Command) -> bool:
        """Whether *cmd* may be stepped inline: no hook of the chain and not the engine can wait
        (decided once per batch, fastpath.batch_mode)."""
        if cmd.local:
            return cmd.name not in ("auth", "hello")        # they call the auth provider
        return self._mode != fastpath.TASK

    async def _finish(self, cmd: Command, coro: Any, yielded: Any) -> None:
        try:
            reply = await (coro if yielded is _FRESH else resume(coro, yielded))
            if reply is None:
                reply = self._reply()
        except Exception as exc:
            reply = self.failed(cmd, exc)
        self._busy = False
        self._task = None
        if not self._closing:
            self.transport.write(reply)
        # this Task runs in self.context already: the commands queued behind it step in it as they are
        # (entering it again would raise "cannot enter context")
        self._in_context = True
        try:
            self._run()
        finally:
            self._in_context = False

    def failed(self, cmd: Command | None, exc: BaseException) -> bytes:
        """An exception while running *cmd*: logged with its traceback, a plain error to the client."""
        name = cmd.name if cmd is not None else "?"
        from covet_pipe.errors import PluginError
        if isinstance(exc, StorageFullError):  # redis's answer when maxmemory is reached
            return encode_error(f"OOM {exc}")
        from covet_pipe.storage.errors import WrongTypeError
        if isinstance(exc, WrongTypeError):    # Redis's own words (a key of another type, in Redis)
            return encode_error(exc.reply)
        if isinstance(exc, (PluginError, NotImplementedError)):
            # no storage engine, a failed provider, an engine without TTLs: say so
            return encode_error(f"ERR {name}: {exc}")
        log.exception("RESP command %r failed", name)
        return INTERNAL

    # -- what commands use: the storage engine, the auth provider ---------------------------

    def storage(self) -> Any:
        """The StoragePlugin commands run against.

        Looked up once per batch of commands that run without suspending (one read's worth), so a
        reloaded engine is used from the next batch on.
        """
        engine = self._engine
        if engine is None:
            engine = self._engine = self.plugin.storage_engine(self.server.manager)
        return engine

    async def authenticate(self, user: bytes | None, password: bytes) -> bytes:
        """AUTH: ask the auth provider; on success later commands carry ``Authorization: Bearer``."""
        provider = await self.plugin.auth_provider(self.server.manager)
        if provider is None:
            if user is None:
                return NO_PASSWORD
            # redis's default user without a password accepts any password; other users do not exist
            return OK if user == b"default" else WRONGPASS
        try:
            who = await provider.authenticate({"token": password.decode("latin-1"), "scheme": "Bearer"})
        except Exception:
            log.exception("RESP AUTH: the auth provider failed")
            who = None
        if who is None:
            return WRONGPASS
        self._auth = (b"authorization", b"Bearer " + password)
        return OK

    # -- graceful shutdown ----------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No command running or waiting."""
        return not self._busy and not self._queue

    def shutdown(self) -> None:
        """Stop reading, finish the command running and those queued, then close."""
        self._eof = True
        self._stopping = True
        if not self._closing and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()
        self._run()


_TX_RUN = COMMANDS[b"exec"].run             # the run of MULTI, EXEC, DISCARD, WATCH, UNWATCH

