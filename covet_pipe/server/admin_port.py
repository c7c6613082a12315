"""``covet-pipe serve --admin HOST:PORT``: the admin API on a port of its own.

The admin app (:func:`covet_pipe.admin_app` over the served manager, or the supervisor's fan-out
with ``--workers N``) is served by covet-pipe's own listener with no plugin chain in front: an empty
manager, no lifespan. With one worker it runs in the serving process's event loop, started after the
main listener and stopped before it. ``--admin PORT`` binds 127.0.0.1; ``unix:PATH`` serves a Unix
socket (mode 0600; the supervisor gives each worker one). There is no admin port without a token:
:func:`admin_token` refuses, naming what to give.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import stat
from typing import Any

from covet_pipe.server.config import ServeConfig

__all__ = ["TOKEN_ENV", "AdminPort", "admin_companions", "admin_listen_config", "admin_token", "bind_admin"]

TOKEN_ENV = "COVET_PIPE_ADMIN_TOKEN"


def admin_token(config: ServeConfig) -> str:
    """The admin token: ``config.admin_token_file``'s first line, else ``$COVET_PIPE_ADMIN_TOKEN``.

    :raises ValueError: neither gives one, or it is shorter than 16 characters (the message says what to do).
    """
    from covet_pipe.admin.auth import load_token
    token_file = config.admin_token_file
    token = None if token_file is not None else (os.environ.get(TOKEN_ENV, "").strip() or None)
    if token_file is None and token is None:
        raise ValueError(f"--admin {config.admin}: the admin API is never served without a token; give "
                         f"--admin-token-file FILE (the token on its first line) or set {TOKEN_ENV} "
                         "(a long random string: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    try:
        return load_token(token, token_file)
    except ValueError as exc:
        raise ValueError(str(exc).replace("admin_app: ", f"--admin {config.admin}: ", 1)) from None


def admin_listen_config(config: ServeConfig) -> ServeConfig:
    """The settings of the admin listener: the admin address, no lifespan, the serving loop and limits."""
    address = config.admin_address()
    host, port = address if isinstance(address, tuple) else ("127.0.0.1", 0)
    return ServeConfig(host=host, port=port, backlog=64, lifespan="off", loop=config.loop,
                       shutdown_timeout=min(config.shutdown_timeout, 5.0), keepalive_timeout=config.keepalive_timeout)


def bind_admin(config: ServeConfig) -> socket.socket:
    """A listening socket at ``config.admin``: TCP, or a Unix socket only its owner may connect to."""
    from covet_pipe.server.listener import bind_socket
    address = config.admin_address()
    if isinstance(address, tuple):
        try:
            return bind_socket(admin_listen_config(config))
        except OSError as exc:
            raise OSError(exc.errno, (exc.strerror or "").replace("pick another --port",
                                                                   "pick another --admin port")) from None
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(address).st_mode):
            os.unlink(address)          # a stale socket of an earlier run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            sock.bind(address)
        finally:
            os.umask(old)
        sock.listen(64)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"covet-pipe serve: cannot listen on unix:{address}: {exc.strerror}") from None
    return sock


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class AdminPort:
    """*app* (an admin ASGI app) served on ``config.admin`` by a Listener with no plugin chain."""

    def __init__(self, app: Any, config: ServeConfig, sock: socket.socket | None = None) -> None:
        self.app = app
        self.config = config
        self.sock = sock
        self.listener: Any = None

    @classmethod
    def over(cls, manager: Any, config: ServeConfig) -> AdminPort:
        """The admin API over *manager* (one process, or one worker's control socket), its socket bound now."""
        from covet_pipe.admin import admin_app
        return cls(admin_app(manager, token=admin_token(config)), config, sock=bind_admin(config))

    @property
    def where(self) -> str:
        address = self.config.admin_address()
        if not isinstance(address, tuple):
            return f"unix:{address}"
        port = self.listener.port if self.listener is not None else address[1]
        return f"http://{address[0]}:{port}"

    async def start(self) -> None:
        from covet_pipe import PluginConfig, PluginManager
        from covet_pipe.logsafe import logger
        from covet_pipe.server.listener import Listener
        sock = self.sock or bind_admin(self.config)
        self.listener = Listener(self.app, PluginManager(PluginConfig()), admin_listen_config(self.config), sock=sock)
        await self.listener.start()
        log = logger("covet_pipe.admin")
        log.info("covet-pipe admin API on %s", self.where)
        address = self.config.admin_address()
        if isinstance(address, tuple) and not _loopback(address[0]):
            log.warning("the admin API listens on %s, beyond this machine: the token is all that guards it "
                        "(bind 127.0.0.1 unless a private network needs it)", self.where)

    def request_stop(self) -> None:
        if self.listener is not None:
            self.listener.request_stop()

    async def shutdown(self) -> None:
        if self.listener is None:
            return
        await self.listener.shutdown()
        address = self.config.admin_address()
        if isinstance(address, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(address)


def admin_companions(listener: Any) -> list[Any]:
    """What ``run_process`` serves beside *listener*: its admin port when ``config.admin`` is set."""
    if listener.config.admin is None:
        return []
    return [AdminPort.over(listener.manager, listener.config)]
