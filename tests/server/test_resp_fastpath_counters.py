"""INCR/DECR/INCRBY/DECRBY, MGET, MSET, MSETNX on the fast path's compiled loop (MemoryStorage's sync_ops):
the same bytes as through the chain and as on an engine whose calls are its own, the chain still seeing
every key of a multi-key command, the same storage counts either way."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Response
from covet_pipe.builtin import MemoryStorage
from tests.server._resp_fixtures import ours  # noqa: F401  (fixture)
from tests.server.test_resp_fastpath import cmd, read_exactly

# the commands and Redis's replies (checked against redis-server 7.0), errors included
STEPS: list[tuple[tuple[bytes, ...], bytes]] = [
    ((b"INCR", b"n"), b":1\r\n"),
    ((b"incr", b"n"), b":2\r\n"),
    ((b"DECR", b"n"), b":1\r\n"),
    ((b"DeCr", b"fresh"), b":-1\r\n"),
    ((b"INCRBY", b"n", b"300"), b":301\r\n"),
    ((b"DECRBY", b"n", b"1000"), b":-699\r\n"),
    ((b"INCRBY", b"n", b"x"), b"-ERR value is not an integer or out of range\r\n"),
    ((b"INCRBY", b"n", b"+1"), b"-ERR value is not an integer or out of range\r\n"),
    ((b"DECRBY", b"n", b"-9223372036854775808"), b"-ERR decrement would overflow\r\n"),
    ((b"SET", b"big", b"9223372036854775807"), b"+OK\r\n"),
    ((b"INCR", b"big"), b"-ERR increment or decrement would overflow\r\n"),
    ((b"SET", b"s", b"abc"), b"+OK\r\n"),
    ((b"INCR", b"s"), b"-ERR value is not an integer or out of range\r\n"),
    ((b"INCR",), b"-ERR wrong number of arguments for 'incr' command\r\n"),
    ((b"MSET", b"a", b"1", b"b", b"22"), b"+OK\r\n"),
    ((b"MSET", b"a", b"1", b"b"), b"-ERR wrong number of arguments for 'mset' command\r\n"),
    ((b"MGET", b"a", b"nope", b"b", b"n"), b"*4\r\n$1\r\n1\r\n$-1\r\n$2\r\n22\r\n$4\r\n-699\r\n"),
    ((b"MSETNX", b"c", b"3", b"a", b"9"), b":0\r\n"),
    ((b"MSETNX", b"c", b"3", b"d", b"4"), b":1\r\n"),
    ((b"MGET", b"a", b"c", b"d"), b"*3\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n4\r\n"),
    ((b"INCRBY", b"a", b"-1"), b":0\r\n"),
    ((b"GET", b"a"), b"$1\r\n0\r\n"),
]


class Passer(MiddlewarePlugin):
    """A sync no-op on "resp" that records the keys it sees."""

    name = "passer"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def process_request(self, request: Any, ctx: Any) -> Any:
        self.seen.append((request.method, request.path))
        if request.path == "locked":
            return MiddlewareAction.respond(Response(403, body=b"locked by passer"))
        return None


class OwnCounters(MemoryStorage):
    """A MemoryStorage whose incr_by is its own (it keeps a log): its counters are not incr_by_now."""

    name = "owncounters"

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    async def incr_by(self, key: str, delta: int) -> int:
        self.log.append(key)
        return await super().incr_by(key, delta)


def run_steps(port: int, steps: list[tuple[tuple[bytes, ...], bytes]]) -> bytes:
    want = b"".join(reply for _, reply in steps)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(cmd(*words) for words, _ in steps))      # one pipelined write
        return read_exactly(sock, len(want))


def test_sync_ops_is_the_engines_own_calls_only() -> None:
    assert MemoryStorage().sync_ops is True
    assert OwnCounters().sync_ops is False and OwnCounters().sync_core is True

    class OwnGetMany(MemoryStorage):
        async def get_many(self, keys: list[str]) -> list[bytes | None]:
            return [b"x" for _ in keys]

    class OwnGet(MemoryStorage):
        async def get(self, key: str) -> bytes | None:
            return b"x"

    assert OwnGetMany().sync_ops is False and OwnGet().sync_ops is False


@pytest.mark.parametrize("route", ["fast path", "chain", "own counters"])
def test_counters_and_multi_key_commands_answer_as_redis(ours, route):
    passer = Passer()
    s = ours(passer) if route == "chain" else ours(storage=OwnCounters() if route == "own counters" else None)
    want = b"".join(reply for _, reply in STEPS)
    assert run_steps(s.port, STEPS) == want
    if route == "chain":        # every key of MSET/MGET/MSETNX passed the chain
        assert ("MSET", "b") in passer.seen and ("MGET", "nope") in passer.seen and ("MSETNX", "d") in passer.seen


def test_mget_nulls_are_resp3s_on_the_fast_path(ours):
    s = ours()
    want = b"+OK\r\n*2\r\n$1\r\n1\r\n_\r\n:2\r\n"
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"HELLO", b"3") + cmd(b"MSET", b"a", b"1") + cmd(b"MGET", b"a", b"b") + cmd(b"INCR", b"a"))
        got = b""
        while not got.endswith(want):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    assert got.startswith(b"%7\r\n") and got.endswith(b"*0\r\n" + want), got


def test_a_key_refused_by_the_chain_refuses_the_whole_mset(ours):
    passer = Passer()
    s = ours(passer)
    refused = b"-NOPERM locked by passer\r\n"
    steps = [((b"MSET", b"a", b"1", b"locked", b"2"), refused),
             ((b"MGET", b"a", b"locked"), refused),
             ((b"INCR", b"locked"), refused),
             ((b"MGET", b"a"), b"*1\r\n$-1\r\n")]        # nothing of the refused MSET was stored
    assert run_steps(s.port, steps) == b"".join(reply for _, reply in steps)
    assert ("MSET", "locked") in passer.seen and ("MGET", "locked") in passer.seen


def test_the_storage_counts_are_the_same_on_the_fast_path_and_through_the_chain(ours):
    def counts(s: Any) -> dict[str, tuple[int, int]]:
        run_steps(s.port, STEPS)
        return s.manager.storage_counts()["memory"]

    assert counts(ours()) == counts(ours(Passer()))


def test_a_full_engine_answers_oom_for_incr_and_mset_on_the_fast_path(ours):
    s = ours(storage=MemoryStorage(max_keys=1))
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(cmd(b"INCR", b"a") + cmd(b"INCR", b"b") + cmd(b"MSET", b"c", b"1") + cmd(b"INCR", b"a"))
        got = b""
        while got.count(b"\r\n") < 4:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
    lines = got.split(b"\r\n")
    assert lines[0] == b":1" and lines[3] == b":2", got
    assert lines[1].startswith(b"-OOM ") and lines[2].startswith(b"-OOM ") and b"max_keys" in lines[1], got
