"""The fast path (no plugin lists "resp", the engine never suspends): commands run straight against
the engine, pipelined replies come back in order and in one piece, and a plugin registered while the
server runs takes the commands back through the chain from the next read on."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import redis

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Response
from covet_pipe.builtin import MemoryStorage
from tests.server._resp_fixtures import ours  # noqa: F401  (fixture)


def cmd(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    got = b""
    deadline = time.monotonic() + 10
    while len(got) < size and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


class Refuser(MiddlewarePlugin):
    """Answers 403 for the key "locked"; counts the commands it sees."""

    name = "refuser"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def __init__(self) -> None:
        self.seen = 0

    def process_request(self, request: Any, ctx: Any) -> Any:
        self.seen += 1
        if request.path == "locked":
            return MiddlewareAction.respond(Response(403, body=b"locked by refuser"))
        return None


def test_a_pipelined_batch_on_the_fast_path_is_answered_in_order(ours):
    s = ours()
    batch = b"".join(cmd(b"SET", b"k%d" % i, b"v%d" % i) for i in range(200))
    batch += b"".join(cmd(b"GET", b"k%d" % i) for i in range(200))
    batch += cmd(b"GET", b"missing") + cmd(b"NOPE", b"x") + cmd(b"GET") + cmd(b"DEL", b"k0", b"k1", b"k0")
    want = b"+OK\r\n" * 200 + b"".join(b"$%d\r\nv%d\r\n" % (len(b"v%d" % i), i) for i in range(200))
    want += (b"$-1\r\n" + b"-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n"
             + b"-ERR wrong number of arguments for 'get' command\r\n" + b":2\r\n")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(batch)
        assert read_exactly(sock, len(want)) == want


def test_a_plugin_registered_while_serving_takes_commands_through_the_chain(ours):
    s = ours()
    c = redis.Redis(port=s.port, single_connection_client=True)
    assert c.set("locked", "1") is True             # no plugin yet: the fast path serves it
    refuser = Refuser()

    async def add() -> None:
        s.manager.register(refuser)

    s.call(add())
    try:
        c.get("locked")
    except redis.exceptions.ResponseError as exc:
        assert "locked by refuser" in str(exc)
    else:
        raise AssertionError("the refuser registered while serving did not see GET locked")
    assert c.get("free") is None
    assert refuser.seen == 2
    c.close()


class Passer(MiddlewarePlugin):
    """A sync no-op on "resp": the commands run the chain, stepped inline."""

    name = "passer"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def process_request(self, request: Any, ctx: Any) -> Any:
        return None


@pytest.mark.parametrize("chain", ["fast path", "chain"])
def test_commands_pipelined_behind_hello_run_after_its_task(ours, chain):
    # HELLO calls the auth provider, so it runs in a Task; the commands behind it in the same read
    # run when it is done, from that Task (in the connection's context already), and are answered in order
    s = ours() if chain == "fast path" else ours(Passer())
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"HELLO", b"3") + cmd(b"SET", b"a", b"1") + cmd(b"GET", b"a") + cmd(b"GET", b"b"))
        got = b""
        deadline = time.monotonic() + 10
        while not got.endswith(b"+OK\r\n$1\r\n1\r\n_\r\n") and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    assert got.startswith(b"%7\r\n") and got.endswith(b"+OK\r\n$1\r\n1\r\n_\r\n"), got


def test_the_fast_path_still_counts_the_engine_calls(ours):
    s = ours()
    before = s.manager.storage_counts().get("memory", {})
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"SET", b"a", b"1") * 3 + cmd(b"GET", b"a") * 2 + cmd(b"GET", b"\xff") +
                     cmd(b"SET", b"a", b"2", b"EX", b"10"))
        want = b"+OK\r\n" * 3 + b"$1\r\n1\r\n" * 2 + b"$-1\r\n" + b"+OK\r\n"
        assert read_exactly(sock, len(want)) == want
    counts = s.manager.storage_counts()["memory"]
    assert counts["set"][0] - before.get("set", (0, 0))[0] == 4
    assert counts["get"][0] - before.get("get", (0, 0))[0] == 3


class Shouting(MemoryStorage):
    """A MemoryStorage whose get is its own (upper-cases the value): its synchronous core is not get."""

    name = "shouting"

    async def get(self, key: str) -> Any:
        value = await super().get(key)
        return None if value is None else value.upper()


def test_the_fast_path_uses_the_engines_own_get_when_a_subclass_overrides_it(ours):
    assert MemoryStorage().sync_core is True
    assert Shouting().sync_core is False
    s = ours(storage=Shouting())
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"SET", b"a", b"abc") + cmd(b"GET", b"a"))
        want = b"+OK\r\n$3\r\nABC\r\n"
        assert read_exactly(sock, len(want)) == want


def test_a_full_engine_on_the_fast_path_answers_oom_and_counts_the_error(ours):
    s = ours(storage=MemoryStorage(max_keys=1))
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"SET", b"a", b"1") + cmd(b"SET", b"b", b"2") + cmd(b"GET", b"a") + cmd(b"GET", b"b"))
        got = b""
        while got.count(b"\r\n") < 5:         # +OK, -OOM ..., $1 1, $-1
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    lines = got.split(b"\r\n")
    assert lines[0] == b"+OK" and lines[1].startswith(b"-OOM ") and b"max_keys" in lines[1], got
    assert lines[2:5] == [b"$1", b"1", b"$-1"], got
    counts = s.manager.storage_counts()["memory"]
    assert counts["set"] == (2, 1) and counts["get"] == (2, 0)


def test_plain_gets_and_sets_around_other_commands_in_one_read(ours):
    # the compiled loop answers runs of plain GET/SET (any case); MULTI's queued ones are queued, not run;
    # what it does not know (arity, other commands) goes the usual way, in order
    s = ours()
    batch = (cmd(b"sEt", b"a", b"1") + cmd(b"get", b"a") + cmd(b"MULTI") + cmd(b"SET", b"a", b"2")
             + cmd(b"GET", b"a") + cmd(b"EXEC") + cmd(b"GET", b"a") + cmd(b"GET", b"a", b"b")
             + cmd(b"SET", b"a") + cmd(b"GETS", b"a") + cmd(b"SET", b"b", b"3", b"NX") + cmd(b"Get", b"b"))
    want = (b"+OK\r\n$1\r\n1\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n2\r\n$1\r\n2\r\n"
            b"-ERR wrong number of arguments for 'get' command\r\n"
            b"-ERR wrong number of arguments for 'set' command\r\n"
            b"-ERR unknown command 'GETS', with args beginning with: 'a' \r\n+OK\r\n$1\r\n3\r\n")
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(batch)
        assert read_exactly(sock, len(want)) == want
    counts = s.manager.storage_counts()["memory"]
    assert counts["get"][0] == 4 and counts["set"][0] >= 2


@pytest.mark.parametrize("storage", ["memory", "shouting"])
def test_through_the_chain_plain_get_and_set_use_the_engine_as_it_is(ours, storage):
    # a sync no-op plugin on "resp": GET and SET pass it, then run on the engine's synchronous core when it
    # has one (counted as its calls), and on the subclass's own get when it overrides it
    passer = Passer()
    seen = []
    passer.process_request = lambda request, ctx: seen.append((request.method, request.path))  # type: ignore
    s = ours(passer, storage=Shouting() if storage == "shouting" else None)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"SET", b"a", b"abc") + cmd(b"GET", b"a") + cmd(b"GET", b"zz"))
        want = b"+OK\r\n$3\r\n%s\r\n$-1\r\n" % (b"ABC" if storage == "shouting" else b"abc")
        assert read_exactly(sock, len(want)) == want
    assert seen == [("SET", "a"), ("GET", "a"), ("GET", "zz")]
    counts = s.manager.storage_counts()[storage]
    assert counts["set"] == (1, 0) and counts["get"] == (2, 0)
