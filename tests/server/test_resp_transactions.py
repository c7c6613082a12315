"""MULTI/EXEC/DISCARD/WATCH byte for byte against a real redis-server (RESP2 and RESP3), redis-py's
pipeline(), atomicity under many clients, a guard refusing one queued command, and an engine
without transactions: EXEC runs nothing and says so. (Over RedisStorage: test_resp_redis_differential.py.)"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from covet_pipe import MiddlewareAction, MiddlewarePlugin
from tests.server._resp_fixtures import real_and_ours, start_ours  # noqa: F401 (real_and_ours: a fixture)
from tests.server.test_resp_commands import Raw, _GetSetOnly


@pytest.fixture(scope="module")
def ports(real_and_ours: tuple[int, int]) -> tuple[int, int]:
    """(real redis port, our port) for the whole module; tests use their own keys."""
    return real_and_ours


def same(ports: tuple[int, int], proto: int, steps: list[tuple[int, tuple[Any, ...]]]) -> None:
    """*steps*: (client number, command); two clients per server; every reply's bytes equal."""
    conns = [[Raw(port, proto) for _ in range(2)] for port in ports]
    try:
        for who, words in steps:
            a, b = conns[0][who].call(*words), conns[1][who].call(*words)
            assert b == a, f"client {who} {words!r}: redis {a!r}, ours {b!r}"
    finally:
        for pair in conns:
            for c in pair:
                c.close()


PROTOCOLS = pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])


@PROTOCOLS
def test_multi_exec_queued_and_runtime_errors_byte_for_byte(ports, proto):
    k = f"tx{proto}"
    same(ports, proto, [(0, c) for c in [
        ("DEL", k), ("EXEC",), ("DISCARD",), ("MULTI", "x"), ("MULTI",), ("SET", k, "1"), ("INCR", k),
        ("INCRBY", k, "x"), ("GET", k), ("MULTI",), ("EXEC",),
        ("MULTI",), ("SET", k, "abc"), ("INCR", k), ("APPEND", k, "d"), ("GET", k), ("EXEC",),
        ("MULTI",), ("SET", k, "lost"), ("NOSUCH", "a"), ("GET", k), ("EXEC",), ("GET", k),
        ("MULTI",), ("SET", k, "lost"), ("GET",), ("EXEC",), ("GET", k),
        ("MULTI",), ("SET", k, "gone"), ("DISCARD",), ("GET", k), ("EXEC",),
        ("MULTI",), ("EXEC",), ("MULTI",), ("WATCH", k), ("PING",), ("EXEC",),
        ("MULTI",), ("MGET", k, k + "none"), ("MSETNX", k, "1"), ("SETNX", k + "n", "1"), ("DEL", k + "n"),
        ("EXPIRE", k, "100"), ("TTL", k), ("PERSIST", k), ("EXEC",),
    ]])


@PROTOCOLS
def test_watch_conflicts_byte_for_byte(ports, proto):
    k, o = f"w{proto}", f"wo{proto}"
    same(ports, proto, [
        (0, ("SET", k, "1")), (0, ("WATCH", k)), (1, ("SET", k, "2")), (0, ("MULTI",)), (0, ("SET", k, "3")),
        (0, ("EXEC",)), (0, ("GET", k)),
        (0, ("WATCH", k, o)), (0, ("MULTI",)), (0, ("INCR", k)), (0, ("EXEC",)),
        (0, ("WATCH", k)), (1, ("GET", k)), (0, ("MULTI",)), (0, ("INCR", k)), (0, ("EXEC",)),
        (0, ("WATCH", o)), (1, ("SET", o, "x")), (0, ("UNWATCH",)), (0, ("MULTI",)), (0, ("SET", o, "y")),
        (0, ("EXEC",)), (0, ("WATCH", o)), (1, ("DEL", o)), (0, ("MULTI",)), (0, ("GET", o)), (0, ("EXEC",)),
        (0, ("WATCH", o)), (1, ("EXPIRE", k, "100")), (0, ("MULTI",)), (0, ("GET", o)), (0, ("EXEC",)),
        (0, ("WATCH", k)), (1, ("EXPIRE", k, "100")), (0, ("MULTI",)), (0, ("GET", k)), (0, ("EXEC",)),
        (0, ("WATCH", k)), (0, ("MULTI",)), (0, ("SET", k, "z")), (0, ("DISCARD",)), (1, ("SET", k, "q")),
        (0, ("MULTI",)), (0, ("GET", k)), (0, ("EXEC",)), (0, ("WATCH",)), (0, ("UNWATCH", "x")),
    ])


def test_redis_py_pipeline_behaves_as_on_redis(ports):
    for port in ports:
        c = redis.Redis(port=port, socket_timeout=10)
        c.delete("p1", "p2")
        with c.pipeline() as pipe:             # transaction=True by default
            pipe.set("p1", "a").incr("p1").append("p1", "b").get("p1")
            results = pipe.execute(raise_on_error=False)
        assert results[0] is True and isinstance(results[1], redis.ResponseError)
        assert results[2:] == [2, b"ab"], port
        with pytest.raises(redis.ResponseError):
            with c.pipeline() as pipe:
                pipe.set("p2", "x").execute_command("NOSUCH")
                pipe.execute()
        assert c.get("p2") is None, "a discarded transaction's write landed"

        def bump(pipe: Any) -> None:           # the WATCH/retry recipe
            value = int(pipe.get("p3") or 0)
            pipe.multi()
            pipe.set("p3", value + 1)

        c.delete("p3")
        for _ in range(3):
            c.transaction(bump, "p3")
        assert c.get("p3") == b"3"
        c.close()


def test_transactions_are_atomic_under_many_clients(ports):
    """8 clients x 50 transactions of GET-then-SET under WATCH, retried on conflict: no update lost."""
    clients, rounds = 8, 50

    def worker(port: int) -> None:
        c = redis.Redis(port=port, socket_timeout=10)

        def bump(pipe: Any) -> None:
            value = int(pipe.get("atomic") or 0)
            pipe.multi()
            pipe.set("atomic", value + 1)
            pipe.incr("atomic-plain")

        for _ in range(rounds):
            c.transaction(bump, "atomic")
        c.close()

    for port in ports:
        c = redis.Redis(port=port)
        c.delete("atomic", "atomic-plain")
        threads = [threading.Thread(target=worker, args=(port,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert c.get("atomic") == c.get("atomic-plain") == b"%d" % (clients * rounds)
        c.close()


class DenyKey(MiddlewarePlugin):
    name = "deny_key"
    version = "1.0.0"
    protocols = frozenset({"resp"})

    def process_request(self, request: Any, ctx: Any) -> Any:
        if request.path == "secret":
            return MiddlewareAction.reject(403, "secret is off limits")
        return None


def test_a_guard_refuses_one_queued_command_and_the_others_run():
    server = start_ours(DenyKey())
    try:
        c = redis.Redis(port=server.port)
        with c.pipeline() as pipe:
            pipe.set("open", "1").set("secret", "x").delete("open2", "secret").get("open")
            results = pipe.execute(raise_on_error=False)
        assert results[0] is True and results[3] == b"1"
        for refused in results[1:3]:
            assert isinstance(refused, redis.exceptions.NoPermissionError)
            assert "secret is off limits" in str(refused)
        engine = server.manager.get_storage_engine()
        assert server.call(engine.get("secret")) is None and server.call(engine.get("open")) == b"1"
        c.close()
    finally:
        server.stop()


def test_an_engine_without_transactions_runs_nothing_and_names_itself():
    server = start_ours(storage=_GetSetOnly())
    try:
        c = redis.Redis(port=server.port)
        with pytest.raises(redis.exceptions.ExecAbortError, match="discarded: .*_GetSetOnly.*atomic"):
            with c.pipeline() as pipe:
                pipe.set("k", "1").set("j", "2")
                pipe.execute()
        assert c.get("k") is None, "a queued write landed although EXEC failed"
        with pytest.raises(redis.ResponseError, match="watch: .*_GetSetOnly.*key_version"):
            c.execute_command("WATCH", "k")
        assert c.set("k", "2") and c.get("k") == b"2"      # it keeps serving
        c.close()
    finally:
        server.stop()
