"""A real redis-server on a free 127.0.0.1 port, for every test that needs Redis.

``RealRedis`` starts ``redis-server`` with no persistence; ``stop()`` and ``start()`` again keep the
same port (for tests of Redis going away and coming back). The ``real_redis`` fixture fails, naming
``make redis``, when redis-server is not installed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Iterator

import pytest

#: how long a server may take to come up
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.02)


class RealRedis:
    """``redis-server --port P --save '' --appendonly no``, stopped by its PID."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again) on its port."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--loglevel", "warning", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def need_redis() -> None:
    for tool in ("redis-server", "redis-cli", "redis-benchmark"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `make redis` (Debian's redis-server package)")


@pytest.fixture
def real_redis() -> Iterator[RealRedis]:
    need_redis()
    r = RealRedis()
    try:
        yield r
    finally:
        r.stop()


class RedisBacked:
    """A *reference* redis-server, a *backing* one, and our RESP port over RedisStorage on the backing one.

    The differential tests send the same commands to the reference and to our port; a client of the
    backing Redis (``direct()``) writes as another application would, under the engine's ``prefix``.
    """

    def __init__(self, prefix: str = "resp:", timeout: float = 2.0, allow_flush: bool = False) -> None:
        from covet_pipe.builtin import RedisStorage, RespProtocol
        from tests.server._resp_fixtures import start_ours

        self.prefix = prefix
        self.reference = RealRedis()
        self.backing = RealRedis()
        try:
            self.storage = RedisStorage(self.backing.url, key_prefix=prefix, timeout=timeout)
            self.ours = start_ours(storage=self.storage, resp=RespProtocol(allow_flush=allow_flush))
        except BaseException:
            self.reference.stop()
            self.backing.stop()
            raise

    def stop(self) -> None:
        self.ours.stop()
        self.reference.stop()
        self.backing.stop()


def redis_backed(**options: object) -> Iterator[RedisBacked]:
    """The body of a fixture yielding a :class:`RedisBacked` (``yield from redis_backed(...)``)."""
    need_redis()
    servers = RedisBacked(**options)  # type: ignore[arg-type]
    try:
        yield servers
    finally:
        servers.stop()
