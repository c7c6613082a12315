"""RESP commands through the middleware chain: auth, authorisation, plugins that see or skip them,
suspending plugins, backpressure, storage engines, detection, and the real listener."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from covet_pipe import AuthPlugin, MiddlewareAction, MiddlewarePlugin, PluginManager, Response, StoragePlugin
from covet_pipe.builtin import AuthGuard, MemoryStorage, RespProtocol
from covet_pipe.protocol import MATCH, NEED_MORE, NO
from tests.server._resp_fixtures import OurResp, ours  # noqa: F401  (fixture)

USERS = {"alice-pw": {"sub": "alice", "deny": ()}, "bob-pw": {"sub": "bob", "deny": ("secret",)}}


class TokenAuth(AuthPlugin):
    """Passwords are tokens; bob may not touch the key "secret"."""

    name = "token_auth"
    version = "1.0.0"

    async def authenticate(self, credentials: dict[str, Any]) -> dict[str, Any] | None:
        return USERS.get(credentials.get("token"))

    async def authorize(self, user: dict[str, Any], resource: str, action: str) -> bool:
        return resource not in user["deny"]


def guarded(ours_start: Any) -> OurResp:
    return ours_start(TokenAuth(), AuthGuard(provider="token_auth"))


def roundtrip(sock: socket.socket, data: bytes, expect_lines: int = 1) -> bytes:
    sock.sendall(data)
    got = b""
    deadline = time.monotonic() + 5
    while got.count(b"\r\n") < expect_lines and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("protocol", [2, 3], ids=["AUTH", "HELLO-AUTH"])
def test_auth_accepted_password_lets_commands_through_the_guard(ours, protocol):
    s = guarded(ours)
    c = redis.Redis(port=s.port, password="alice-pw", protocol=protocol)
    assert c.set("k", "v") is True and c.get("k") == b"v" and c.delete("k") == 1
    c.close()


@pytest.mark.parametrize("protocol", [2, 3], ids=["AUTH", "HELLO-AUTH"])
def test_auth_wrong_password_is_wrongpass(ours, protocol):
    s = guarded(ours)
    # no retries: redis-py retries an AuthenticationError three times with backoff by default (3 s)
    c = redis.Redis(port=s.port, password="nope", protocol=protocol, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.AuthenticationError, match="invalid username-password pair"):
        c.ping()
    c.close()


def test_command_without_auth_gets_noauth_and_the_connection_keeps_working(ours):
    s = guarded(ours)
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as sock:
        assert roundtrip(sock, b"GET k\r\n") == b"-NOAUTH Authentication required.\r\n"
        assert roundtrip(sock, b"AUTH wrong\r\n") == \
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        assert roundtrip(sock, b"AUTH alice-pw\r\n") == b"+OK\r\n"
        assert roundtrip(sock, b"SET k v\r\nGET k\r\n", 3) == b"+OK\r\n$1\r\nv\r\n"


def test_forbidden_key_reaches_redis_py_as_error_reply_and_the_client_keeps_working(ours):
    s = guarded(ours)
    c = redis.Redis(port=s.port, password="bob-pw", protocol=3, single_connection_client=True)
    conn_id = c.client_id()
    with pytest.raises(redis.exceptions.NoPermissionError, match="Forbidden"):
        c.get("secret")
    assert c.set("open", "1") is True and c.get("open") == b"1"
    assert c.client_id() == conn_id            # the same connection, not a reconnect
    c.close()


def test_multi_key_command_is_rejected_before_touching_storage_if_any_key_is_forbidden(ours):
    s = guarded(ours)
    c = redis.Redis(port=s.port, password="alice-pw")
    c.set("a", "1")
    c.set("secret", "2")
    bob = redis.Redis(port=s.port, password="bob-pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        bob.delete("a", "secret")
    assert c.exists("a", "secret") == 2        # nothing was deleted
    assert bob.delete("a") == 1
    c.close()
    bob.close()


@pytest.mark.parametrize("how", ["MSET", "MSETNX", "MULTI MSET"])
def test_mset_is_refused_if_the_guard_refuses_any_of_its_keys(ours, how):
    # the chain checks every key of MSET/MSETNX (not their values): bob may not write "secret", even second
    s = guarded(ours)
    c = redis.Redis(port=s.port, password="alice-pw")
    bob = redis.Redis(port=s.port, password="bob-pw")
    command = "MSETNX" if how == "MSETNX" else "MSET"
    with pytest.raises(redis.exceptions.NoPermissionError):
        if how == "MULTI MSET":
            with bob.pipeline(transaction=True) as p:
                p.mset({"a": "1", "secret": "2"})
                p.execute()
        else:
            bob.execute_command(command, "a", "1", "secret", "2")
    assert c.exists("a", "secret") == 0        # nothing was written
    # a value that names the forbidden key is a value, not a key: let through
    assert bob.execute_command(command, "a", "secret", "b", "2") in (True, 1)
    assert c.mget("a", "b") == [b"secret", b"2"]
    c.close()
    bob.close()


class Recorder(MiddlewarePlugin):
    name = "recorder"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def process_request(self, request: Any, ctx: Any) -> Any:
        self.seen.append((ctx.protocol, request.method, request.path, request.raw_path, request.scheme,
                          request.client[0]))
        if request.path == "magic":
            return MiddlewareAction.respond(Response(200, body=b"from the plugin"))
        if request.path == "busy":
            return MiddlewareAction.reject(429, "slow down")
        return None


class HttpOnlyBlocker(MiddlewarePlugin):
    name = "http_only_blocker"
    version = "1.0.0"

    def __init__(self) -> None:
        self.calls = 0

    def process_request(self, request: Any, ctx: Any) -> Any:
        self.calls += 1
        return MiddlewareAction.reject(403, "http only")


def test_resp_middleware_sees_commands_as_requests_and_http_only_plugins_are_skipped(ours):
    rec, blocker = Recorder(), HttpOnlyBlocker()
    s = ours(rec, blocker)
    c = redis.Redis(port=s.port, protocol=2)
    assert c.set(b"k\xff\x00", "v") is True
    assert c.get(b"k\xff\x00") == b"v"
    assert c.ping() is True
    assert c.get("magic") == b"from the plugin"           # a plugin's 200 answer: a bulk string
    with pytest.raises(redis.exceptions.ResponseError, match="^429 slow down$"):
        c.get("busy")
    c.close()
    assert ("resp", "SET", "k\xff\x00", b"k\xff\x00", "redis", "127.0.0.1") in rec.seen
    assert ("resp", "GET", "k\xff\x00", b"k\xff\x00", "redis", "127.0.0.1") in rec.seen
    assert ("resp", "PING", "", b"", "redis", "127.0.0.1") in rec.seen
    assert blocker.calls == 0


class ResponseHook(MiddlewarePlugin):
    """Sees every command's response; turns the reply for the key "hidden" into a 403."""

    name = "response_hook"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str, int]] = []

    def process_response(self, response: Any, ctx: Any) -> Any:
        self.statuses.append((ctx.request.method, ctx.request.path, response.status))
        if ctx.request.path == "hidden":
            response.status = 403


def test_response_hooks_see_each_command_and_a_changed_status_becomes_an_error_reply(ours):
    hook = ResponseHook()
    s = ours(hook)
    c = redis.Redis(port=s.port, single_connection_client=True)
    assert c.set("k", "v") is True and c.get("k") == b"v"
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match="^this user has no permissions to run this command$"):
        c.get("hidden")
    assert c.get("k") == b"v"
    c.close()
    assert [("SET", "k", 200), ("GET", "k", 200), ("GET", "hidden", 200)] == \
        [x for x in hook.statuses if x[0] in ("SET", "GET")][:3]


class Suspends(MiddlewarePlugin):
    """An async hook that really waits on the loop for some commands."""

    name = "suspends"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.suspended = 0

    async def process_request(self, request: Any, ctx: Any) -> Any:
        if request.path.endswith("7") or self.delay:
            self.suspended += 1
            await asyncio.sleep(self.delay)
        return None


def test_pipelined_commands_stay_in_order_when_some_suspend(ours):
    plugin = Suspends()
    s = ours(plugin)
    c = redis.Redis(port=s.port)
    pipe = c.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"k{i}", i).get(f"k{i}")
    results = pipe.execute()
    assert results == [x for i in range(200) for x in (True, str(i).encode())]
    assert plugin.suspended >= 20
    c.close()


def test_reading_pauses_while_too_many_commands_wait_and_every_reply_arrives(ours):
    plugin = Suspends(delay=0.0005)
    s = ours(plugin, resp=RespProtocol(max_pending=16))
    n = 2000
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        done = threading.Event()
        got = bytearray()

        def reader() -> None:
            deadline = time.monotonic() + 60
            while got.count(b"\r\n") < 2 * n and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        sock.sendall(b"*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n" * n)
        assert done.wait(70)
        conns = list(s.context.connections)  # type: ignore[union-attr]
        assert len(conns) == 1 and conns[0].read_pauses >= 1
    assert bytes(got) == b"$1\r\nx\r\n" * n
    assert plugin.suspended == n


def test_client_that_does_not_read_pauses_writing_and_the_server_buffers_little(ours):
    s = ours()
    value = b"v" * (1024 * 1024)
    n = 200                                      # 200 MiB of replies if nothing held back
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n%s\r\n" % (len(value), value))
        assert sock.recv(5) == b"+OK\r\n"
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" * n)
        time.sleep(1.0)                          # the server writes until the transport pushes back
        conn = next(iter(s.context.connections))  # type: ignore[union-attr]
        buffered = s.call(_write_buffer(conn))
        assert conn.write_pauses >= 1
        assert buffered < 16 * 1024 * 1024, buffered
        want = n * (len(value) + len(b"$1048576\r\n\r\n"))
        got = 0
        deadline = time.monotonic() + 60
        while got < want and time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            got += len(chunk)
        assert got == want


async def _write_buffer(conn: Any) -> int:
    return int(conn.transport.get_write_buffer_size())


class NoTtlStore(StoragePlugin):
    name = "no_ttl"
    version = "1.0.0"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.data[key] = bytes(value)

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        return key in self.data


def test_named_storage_engine_serves_and_missing_ttl_support_is_an_error_reply(ours):
    store = NoTtlStore()
    s = ours(store, resp=RespProtocol(storage="no_ttl"))
    c = redis.Redis(port=s.port)
    assert c.set("k", "v") is True and store.data == {"k": b"v"}
    with pytest.raises(redis.exceptions.ResponseError, match="does not support ttl"):
        c.ttl("k")
    assert c.get("k") == b"v"
    c.close()


def test_full_storage_is_an_oom_error_reply_and_the_connection_keeps_working():
    manager = PluginManager()
    resp = RespProtocol()
    for p in (MemoryStorage(max_keys=1), resp):
        manager.register(p)
    s = OurResp(manager, resp).start()
    try:
        c = redis.Redis(port=s.port, single_connection_client=True)
        assert c.set("a", "1") is True
        with pytest.raises(redis.exceptions.OutOfMemoryError, match="MemoryStorage is full"):
            c.set("b", "2")
        assert c.get("a") == b"1"
        c.close()
    finally:
        s.stop()


def test_no_storage_engine_is_an_error_reply_that_says_what_to_register():
    manager = PluginManager()
    resp = RespProtocol()
    manager.register(resp)
    s = OurResp(manager, resp).start()
    try:
        c = redis.Redis(port=s.port)
        with pytest.raises(redis.exceptions.ResponseError, match="no storage engine is registered"):
            c.get("k")
        assert c.ping() is True
        c.close()
    finally:
        s.stop()


@pytest.mark.parametrize("data, verdict", [
    (b"*1\r\n", MATCH), (b"*", MATCH), (b"PING\r\n", MATCH), (b"get k\r\n", MATCH), (b"  set k v\n", MATCH),
    (b"", NEED_MORE), (b"PI", NEED_MORE), (b"GE", NEED_MORE), (b"GET", NEED_MORE),
    (b"GET / HTTP/1.1\r\n", MATCH), (b"POST / HTTP/1.1\r\n", NO), (b"\x16\x03\x01", NO), (b"PINGX ", NO),
    (b"HELLOWORLD", NO),
])
def test_detect_claims_arrays_and_supported_inline_commands(data, verdict):
    assert RespProtocol().detect(data) == verdict


class RealListener:
    """covet-pipe's listener (asyncio loop) with MemoryStorage, RespProtocol and *plugins*, in a thread."""

    def __init__(self, *plugins: Any) -> None:
        from covet_pipe.server.config import ServeConfig
        from covet_pipe.server.listener import Listener

        async def app(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"http ok"})

        self.manager = PluginManager()
        for p in (MemoryStorage(), RespProtocol(), *plugins):
            self.manager.register(p)
        self.listener = Listener(app, self.manager, ServeConfig(port=0, lifespan="off", loop="asyncio",
                                                                shutdown_timeout=5))
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.manager.initialize_all())  # the protocol chain is built here
            self.loop.run_until_complete(self.listener.start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(20)
        self.port = self.listener.port

    def shutdown(self) -> Any:
        return asyncio.run_coroutine_threadsafe(self.listener.shutdown(), self.loop)

    def close(self) -> None:
        self.shutdown().result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(20)
        self.loop.close()


def test_resp_and_http_share_one_port_on_the_real_listener():
    served = RealListener()
    try:
        c = redis.Redis(port=served.port, protocol=3)
        assert c.set("k", "v") is True and c.get("k") == b"v"
        c.close()
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = b""
            while (chunk := sock.recv(65536)):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b"http ok" in reply
    finally:
        served.close()


def test_graceful_shutdown_answers_the_command_in_flight_then_closes():
    served = RealListener(Suspends(delay=0.3))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n")
            time.sleep(0.1)                      # the command is waiting in the plugin
            stopping = served.shutdown()
            t0 = time.monotonic()
            got = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert got == b"$2\r\nhi\r\n"       # answered, then closed by the server ...
            assert time.monotonic() - t0 < 2.0        # ... at once, not cut at shutdown_timeout (5 s)
            stopping.result(10)
    finally:
        served.close()


class TimesOut(MiddlewarePlugin):
    """An async plugin that needs a real Task: asyncio.timeout() and current_task()."""
    name = "times_out"
    version = "1.0"
    protocols = {"resp"}

    def __init__(self) -> None:
        self.tasks: list[Any] = []             # kept alive, so their ids stay distinct

    async def process_request(self, request: Any, ctx: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None, "no current task"
        self.tasks.append(task)
        async with asyncio.timeout(5):           # raises RuntimeError outside a task
            await asyncio.sleep(0)
        return None


def test_async_hooks_on_resp_run_in_a_real_task(ours):
    plugin = TimesOut()
    s = ours(plugin)
    c = redis.Redis(port=s.port)
    for i in range(5):
        assert c.set(f"t{i}", i) is True
        assert c.get(f"t{i}") == str(i).encode()
    c.close()
    # one Task per command (redis-py's CLIENT SETINFO on connect runs the chain too)
    assert len(plugin.tasks) >= 10 and len({id(t) for t in plugin.tasks}) == len(plugin.tasks)


class Slow(StoragePlugin):
    """A storage engine that waits (as one talking to a server would), using asyncio.timeout()."""
    name = "slow_store"
    version = "1.0"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        async with asyncio.timeout(5):
            await asyncio.sleep(0.001)
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        async with asyncio.timeout(5):
            await asyncio.sleep(0.001)
        self.data[key] = value

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        return key in self.data


def test_a_storage_engine_that_waits_runs_in_a_task(ours):
    s = ours(resp=RespProtocol(storage="slow_store"))
    s.call(_register(s, Slow()))
    c = redis.Redis(port=s.port)
    assert c.set("a", "1") is True and c.get("a") == b"1"
    c.close()


async def _register(s: Any, plugin: Any) -> None:
    s.manager.register(plugin)
    await s.manager.initialize_all()
