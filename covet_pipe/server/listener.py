"""The listener: one process serving: a socket, the protocol chain on every connection,
lifespan and graceful shutdown.

``Listener`` is the asynchronous core (start, serve until a signal, shut down);
:func:`run_process` runs one on its own event loop until SIGTERM/SIGINT. Whether one
process serves or a supervisor forks several is :mod:`covet_pipe.server.launch`'s call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from covet_pipe.metrics import multiprocess
from covet_pipe.protocol import ServerContext
from covet_pipe.server.config import ServeConfig

__all__ = ["Listener", "bind_socket", "new_event_loop", "run_process", "wrap_app"]

log = logging.getLogger("covet_pipe.server")


def wrap_app(app: Any, manager: Any = None) -> Any:
    """*app* behind the middleware chain: a Pipeline (reused as is when *app* already is one)."""
    from covet_pipe.asgi import Pipeline
    if isinstance(app, Pipeline):
        if manager is not None and manager is not app.manager:
            raise ValueError("serve(app, manager): app is already a Pipeline with its own manager; "
                             "pass the inner app with the manager, or the Pipeline alone")
        return app
    return Pipeline(app, manager)


def bind_socket(config: ServeConfig, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A bound TCP socket for ``config.host:config.port``, listening and non-blocking.

    :param reuse_port: set SO_REUSEPORT, so that several processes bind the same port
        and the kernel spreads connections over them.
    :param listen: False for a socket that only holds the port (a supervisor's, so that
        ``port=0`` resolves once for all its workers): bound, never accepting.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port))
        if listen:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.listen(config.backlog)
            sock.setblocking(False)
    except OSError as exc:
        sock.close()
        what = "listen on" if listen else "bind"
        raise OSError(exc.errno, f"covet-pipe serve: cannot {what} {config.host}:{config.port}: "
                                 f"{exc.strerror}; pick another --port or stop what holds it") from None
    return sock


class _Lifespan:
    """The ASGI lifespan of the app (through the Pipeline, which starts the plugins)."""

    def __init__(self, app: Any, state: dict[str, Any], mode: str) -> None:
        self.app = app
        self.state = state
        self.mode = mode
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.failure: str | None = None
        self.unsupported = False
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failure is not None and (self.mode == "on" or not self.unsupported):
            raise RuntimeError(f"the app's lifespan startup failed: {self.failure}")

    async def shutdown(self, timeout: float) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self.stopped.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("the app's lifespan shutdown did not finish within %.1f s", timeout)
            self.task.cancel()

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException as exc:
            if not self.started.is_set():
                self.unsupported = True
                self.failure = f"{type(exc).__name__}: {exc}"
                log.info("the app's lifespan raised %s; serving without it", self.failure) \
                    if self.mode == "auto" else log.error("the app's lifespan raised %s", self.failure)
            else:
                log.exception("the app's lifespan failed")
        finally:
            self.started.set()
            self.stopped.set()

    async def _send(self, message: dict[str, Any]) -> None:
        t = message["type"]
        if t == "lifespan.startup.complete":
            self.started.set()
        elif t == "lifespan.startup.failed":
            self.failure = message.get("message", "") or "lifespan.startup.failed"
            self.started.set()
        elif t in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            self.stopped.set()


class Listener:
    """covet-pipe's server in one process: ``await start()``, then ``await shutdown()``.

    :param app: any ASGI 3 app, or a Pipeline (its manager's chain runs in front).
    :param manager: the PluginManager for a plain *app* (a new empty one if omitted).
    :param config: the ServeConfig.
    :param sock: a listening socket to serve on instead of binding ``config.host:port``.
    :param plugin_dirs: folders whose plugins are loaded into the manager before startup. A list, even an
        empty one, discovers: the installed plugin packages (entry points) are loaded too when the manager's
        ``PluginConfig.entry_points`` is on (``covet-pipe serve`` passes one; ``--no-entry-points`` turns
        that off). None loads nothing here (the manager's own ``plugin_paths`` still load at startup).
    """

    def __init__(self, app: Any, manager: Any = None, config: ServeConfig | None = None, *,
                 sock: socket.socket | None = None, plugin_dirs: list[str] | None = None,
                 reuse_port: bool = False) -> None:
        self.pipeline = wrap_app(app, manager)
        self.manager = self.pipeline.manager
        self.config = config or ServeConfig()
        self.sock = sock
        self.plugin_dirs = list(plugin_dirs or [])
        self.discover = plugin_dirs is not None
        self.reuse_port = reuse_port
        self.context: ServerContext | None = None
        self.server: Any = None
        self.lifespan: _Lifespan | None = None
        self.stopping: asyncio.Event | None = None
        #: served beside this listener by :meth:`serve_forever`: objects with ``async start()`` and
        #: ``async shutdown()`` (the admin port), started after it and shut down before it
        self.companions: list[Any] = []

    @property
    def port(self) -> int:
        """The port being served (useful with ``port=0``)."""
        assert self.server is not None, "start() first"
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Load plugins, run the lifespan startup, then accept connections."""
        from covet_pipe.server.protocol_chain import Detector, ProtocolChain
        from covet_pipe.server.http11 import HTTP11Protocol

        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        config = self.manager.config
        # a manager that discovered already (an app's, at import) has its entry points; with
        # auto_resolve_dependencies, missing dependencies are looked for one by one instead
        if self.plugin_dirs or (self.discover and config.entry_points and not config.auto_resolve_dependencies
                                and not getattr(self.manager, "_discovered", False)):
            config.plugin_paths.extend(d for d in self.plugin_dirs if d not in config.plugin_paths)
            await self.manager.load_plugins()
        ctx = ServerContext(self.pipeline, self.manager, self.config, loop)
        self.context = ctx
        if self.config.lifespan != "off":
            self.lifespan = _Lifespan(self.pipeline, ctx.state, self.config.lifespan)
            await self.lifespan.startup()
        self.manager.log_plugins()      # one line per plugin and per failure, before serving
        builtins: list[Any] = [HTTP11Protocol()]
        if self.config.trusted_proxies:
            # --trusted-proxy means the PROXY layer is wanted even when no plugin registered it
            from covet_pipe.server.proxy import ProxyProtocol
            builtins.append(ProxyProtocol())
        chain = ProtocolChain(self.manager, builtins=builtins, config=self.config)
        sock = self.sock or bind_socket(self.config, reuse_port=self.reuse_port)
        self.server = await loop.create_server(lambda: Detector(chain, ctx), sock=sock,
                                               backlog=self.config.backlog)
        multiprocess.flusher(self.manager)      # --workers N: this worker's counters reach the shared files
        name = self.server.sockets[0].getsockname()
        where = f"http://{name[0]}:{name[1]}" if isinstance(name, tuple) else f"unix:{name}"
        log.info("covet-pipe serving on %s (protocols: %s)", where, ", ".join(p.name for p in chain.plugins()))

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to shut down (signal handlers call this)."""
        if self.stopping is not None:
            self.stopping.set()

    async def serve_forever(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or :meth:`request_stop`), then shut down."""
        await self.start()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
                handled.append(sig)
        started: list[Any] = []
        try:
            for companion in self.companions:   # the admin port: after the app's listener, in this loop
                await companion.start()
                started.append(companion)
            assert self.stopping is not None
            await self.stopping.wait()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            for companion in reversed(started):
                await companion.shutdown()
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight requests finish within shutdown_timeout, then close."""
        ctx = self.context
        if ctx is None or ctx.shutting_down:
            return
        ctx.shutting_down = True
        timeout = self.config.shutdown_timeout
        log.info("covet-pipe shutting down: %d connection(s) open, up to %.1f s for in-flight requests",
                 len(ctx.connections), timeout)
        if self.server is not None:
            self.server.close()
        pending = []
        for conn in list(ctx.connections):
            stop = getattr(conn, "shutdown", None)
            result = stop() if stop is not None else None
            if inspect.isawaitable(result):
                pending.append(asyncio.ensure_future(result))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while ctx.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(ctx.connections):
            log.warning("shutdown_timeout (%.1f s) passed: cutting a connection that is still busy", timeout)
            abort = getattr(conn, "abort", None)
            if abort is not None:
                abort()
            else:
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()
        for fut in pending:
            fut.cancel()
        if self.server is not None:
            try:
                await asyncio.wait_for(self.server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
        if self.lifespan is not None:
            await self.lifespan.shutdown(timeout)
        await multiprocess.stop(self.manager)   # the last flush of what this worker counted


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A uvloop loop (asyncio's when uvloop is missing or *kind* is "asyncio")."""
    if kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: serving on asyncio's loop (pip install uvloop)")
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_process(app: Any, manager: Any = None, config: ServeConfig | None = None, *,
                plugin_dirs: list[str] | None = None, sock: socket.socket | None = None,
                reuse_port: bool = False, companions: Callable[[Listener], list[Any]] | None = None) -> None:
    """Serve *app* in this process until SIGTERM/SIGINT (blocking), on a new event loop.

    :param sock: a listening socket to serve on instead of binding ``config.host:port``.
    :param reuse_port: bind with SO_REUSEPORT (each worker of a supervisor does).
    :param companions: what else to serve in this loop, made from the listener (:attr:`Listener.companions`).
    """
    config = config or ServeConfig()
    listener = Listener(app, manager, config, sock=sock, plugin_dirs=plugin_dirs, reuse_port=reuse_port)
    if companions is not None:
        listener.companions = companions(listener)
    loop = new_event_loop(config.loop)
    try:
        loop.run_until_complete(listener.serve_forever())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
