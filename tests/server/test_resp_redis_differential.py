"""Our RESP port over RedisStorage against a real redis-server, byte for byte (RESP2 and RESP3).

The same command sequences go to a *reference* redis-server and to our port, whose engine is a
RedisStorage (key prefix ``d:``) on a *backing* redis-server. Besides two clients of each, a third
actor writes *directly*: to the reference, or to the backing Redis under the prefix, as another
application sharing that Redis would. Covered: transactions (queued errors, EXEC after a failed
command, DISCARD, WATCH conflicts made by another client and by a direct write, WRONGTYPE inside
EXEC), the SET/GETEX/EXPIRE flags in and out of MULTI, SCAN paging, DBSIZE and INFO keyspace, and
many clients running WATCH/MULTI/EXEC at once while a direct writer bumps the same counter.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest
import redis

from tests._redis import RedisBacked, redis_backed
from tests.server.test_resp_commands import Raw

PREFIX = "d:"
DIRECT = "direct"
PROTOCOLS = pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])


@pytest.fixture(scope="module")
def servers() -> Iterator[RedisBacked]:
    yield from redis_backed(prefix=PREFIX, timeout=5.0, allow_flush=True)


class Side:
    """One side of the comparison: two RESP clients and the direct writer (key prefixed on ours)."""

    def __init__(self, port: int, direct_port: int, prefix: str, proto: int) -> None:
        self.clients = [Raw(port, proto), Raw(port, proto)]
        self.direct = Raw(direct_port, proto)
        self.prefix = prefix.encode()

    def call(self, who: int | str, words: tuple[Any, ...]) -> bytes:
        if who == DIRECT:                   # words[1] is the key
            key = words[1] if isinstance(words[1], bytes) else str(words[1]).encode()
            return self.direct.call(words[0], self.prefix + key, *words[2:])
        assert isinstance(who, int)
        return self.clients[who].call(*words)

    def close(self) -> None:
        for c in (*self.clients, self.direct):
            c.close()


def sides(servers: RedisBacked, proto: int) -> tuple[Side, Side]:
    return (Side(servers.reference.port, servers.reference.port, "", proto),
            Side(servers.ours.port, servers.backing.port, servers.prefix, proto))


def same(servers: RedisBacked, proto: int, steps: list[tuple[int | str, tuple[Any, ...]]]) -> None:
    """*steps*: (actor, command): actor 0 or 1 (our RESP clients), or DIRECT; every reply's bytes equal."""
    ref, ours = sides(servers, proto)
    try:
        ref.call(0, ("FLUSHDB",)), ours.call(0, ("FLUSHDB",))
        for who, words in steps:
            a, b = ref.call(who, words), ours.call(who, words)
            assert b == a, f"{who} {words!r}: redis {a!r}, ours over RedisStorage {b!r}"
    finally:
        ref.close()
        ours.close()


def by(who: int | str, *commands: tuple[Any, ...]) -> list[tuple[int | str, tuple[Any, ...]]]:
    return [(who, c) for c in commands]


@PROTOCOLS
def test_queued_errors_runtime_errors_and_discard(servers, proto):
    same(servers, proto, by(
        0, ("EXEC",), ("DISCARD",), ("MULTI", "x"), ("MULTI",), ("SET", "k", "1"), ("INCR", "k"),
        ("INCRBY", "k", "x"), ("GET", "k"), ("MULTI",), ("EXEC",), ("GET", "k"),
        # EXEC after a failed command: INCR on text fails in its slot, the rest runs
        ("MULTI",), ("SET", "k", "abc"), ("INCR", "k"), ("APPEND", "k", "d"), ("INCRBYFLOAT", "k", "1"),
        ("GET", "k"), ("EXEC",),
        # a queued error (unknown command, wrong arity): EXECABORT, nothing runs
        ("MULTI",), ("SET", "k", "lost"), ("NOSUCH", "a"), ("GET", "k"), ("EXEC",), ("GET", "k"),
        ("MULTI",), ("SET", "k", "lost"), ("GET",), ("EXEC",), ("GET", "k"),
        ("MULTI",), ("SET", "k", "gone"), ("DISCARD",), ("GET", "k"), ("EXEC",),
        ("MULTI",), ("SET", "k", "v", "EX", "0"), ("SET", "k", "v", "BOGUS"), ("GET", "k"), ("EXEC",),
        ("MULTI",), ("MSET", "a", "1", "b", "2"), ("MGET", "a", "b", "none"), ("MSETNX", "a", "1"),
        ("SETNX", "n", "1"), ("DEL", "n", "a", "none"), ("EXISTS", "a", "b", "b"), ("GETSET", "b", "3"),
        ("GETDEL", "b"), ("STRLEN", "k"), ("TYPE", "k"), ("TYPE", "none"), ("DBSIZE",), ("PING",),
        ("ECHO", "e"), ("EXEC",),
    ))


@PROTOCOLS
def test_set_getex_and_expire_flags_in_and_out_of_multi(servers, proto):
    at = str(int(time.time()) + 1000)
    flags = [
        ("SET", "s", "1", "NX"), ("SET", "s", "2", "NX"), ("SET", "s", "3", "XX", "GET"),
        ("SET", "t", "1", "XX"), ("SET", "t", "1", "NX", "GET"), ("SET", "t", "2", "NX", "GET"),
        ("SET", "s", "4", "EX", "100", "GET"), ("TTL", "s"), ("SET", "s", "5", "KEEPTTL"), ("TTL", "s"),
        ("SET", "s", "6", "XX", "KEEPTTL", "GET"), ("TTL", "s"), ("SET", "s", "7", "EXAT", at), ("EXPIRETIME", "s"), ("PEXPIRETIME", "s"),
        ("SET", "s", "8", "PXAT", at + "000", "NX"), ("SET", "s", "9", "PXAT", "1", "GET"), ("EXISTS", "s"),
        ("SET", "g", "v"), ("GETEX", "g", "EX", "100"), ("TTL", "g"), ("GETEX", "g", "PERSIST"), ("TTL", "g"),
        ("GETEX", "g", "PX", "200000"), ("TTL", "g"), ("GETEX", "g", "EXAT", at), ("EXPIRETIME", "g"),
        ("GETEX", "none", "EX", "5"), ("GETEX", "g", "PXAT", "1"), ("EXISTS", "g"),
        ("SET", "e", "v"), ("EXPIRE", "e", "100", "XX"), ("EXPIRE", "e", "100", "NX"), ("TTL", "e"),
        ("EXPIRE", "e", "50", "NX"), ("EXPIRE", "e", "500", "GT"), ("TTL", "e"), ("EXPIRE", "e", "50", "GT"),
        ("EXPIRE", "e", "60", "LT"), ("TTL", "e"), ("PEXPIRE", "e", "70000", "XX", "GT"), ("TTL", "e"),
        ("EXPIREAT", "e", at, "LT"), ("EXPIRETIME", "e"), ("PEXPIREAT", "e", at + "123", "GT"), ("PEXPIRETIME", "e"),
        ("PERSIST", "e"), ("EXPIRE", "e", "5", "LT"), ("TTL", "e"), ("PERSIST", "e"), ("PERSIST", "e"),
        ("EXPIRE", "none", "5", "NX"), ("EXPIRE", "e", "-1", "XX"), ("EXPIRE", "e", "-1"), ("EXISTS", "e"),
    ]
    same(servers, proto, by(0, *flags))
    same(servers, proto, by(0, ("MULTI",), *flags, ("EXEC",)))


@PROTOCOLS
def test_watch_conflicts_by_another_client_and_by_a_direct_write(servers, proto):
    same(servers, proto, [
        # another client of our port writes the watched key
        (0, ("SET", "w", "1")), (0, ("WATCH", "w")), (1, ("SET", "w", "2")), (0, ("MULTI",)),
        (0, ("SET", "w", "3")), (0, ("EXEC",)), (0, ("GET", "w")),
        # a client of the backing Redis (not through covet-pipe) writes it between WATCH and EXEC
        (0, ("WATCH", "w")), (DIRECT, ("SET", "w", "direct")), (0, ("MULTI",)), (0, ("INCR", "w")),
        (0, ("EXEC",)), (0, ("GET", "w")),
        (0, ("WATCH", "w", "o")), (DIRECT, ("EXPIRE", "w", "100")), (0, ("MULTI",)), (0, ("GET", "w")),
        (0, ("EXEC",)),
        (0, ("WATCH", "w")), (DIRECT, ("DEL", "w")), (0, ("MULTI",)), (0, ("GET", "w")), (0, ("EXEC",)),
        (0, ("WATCH", "absent")), (DIRECT, ("SET", "absent", "now")), (0, ("MULTI",)), (0, ("GET", "absent")),
        (0, ("EXEC",)),
        # reads and writes of other keys leave the watch alone; WATCH twice adds keys
        (0, ("WATCH", "w")), (1, ("GET", "w")), (DIRECT, ("SET", "other", "x")), (0, ("WATCH", "o")),
        (0, ("MULTI",)), (0, ("SET", "w", "mine")), (0, ("EXEC",)),
        (0, ("WATCH", "w")), (0, ("WATCH", "o")), (DIRECT, ("SET", "o", "x")), (0, ("MULTI",)),
        (0, ("SET", "w", "lost")), (0, ("EXEC",)), (0, ("GET", "w")),
        # the watching client's own write outside MULTI breaks its watch too, as in redis
        (0, ("WATCH", "w")), (0, ("SET", "w", "own")), (0, ("MULTI",)), (0, ("GET", "w")), (0, ("EXEC",)),
        # UNWATCH, DISCARD and EXECABORT end the watch: a later write is no conflict
        (0, ("WATCH", "w")), (0, ("UNWATCH",)), (DIRECT, ("SET", "w", "x")), (0, ("MULTI",)),
        (0, ("GET", "w")), (0, ("EXEC",)),
        (0, ("WATCH", "w")), (0, ("MULTI",)), (0, ("SET", "w", "z")), (0, ("DISCARD",)), (1, ("SET", "w", "q")),
        (0, ("MULTI",)), (0, ("GET", "w")), (0, ("EXEC",)),
        (0, ("WATCH", "w")), (0, ("MULTI",)), (0, ("NOSUCH",)), (0, ("EXEC",)), (DIRECT, ("SET", "w", "r")),
        (0, ("MULTI",)), (0, ("GET", "w")), (0, ("EXEC",)),
        (0, ("WATCH",)), (0, ("UNWATCH", "x")), (0, ("MULTI",)), (0, ("WATCH", "w")), (0, ("EXEC",)),
    ])


@PROTOCOLS
def test_a_key_of_another_type_is_wrongtype_in_its_slot(servers, proto):
    same(servers, proto, [
        (DIRECT, ("RPUSH", "list", "a")), (0, ("GET", "list")), (0, ("INCR", "list")), (0, ("TYPE", "list")),
        (0, ("MULTI",)), (0, ("SET", "k", "1")), (0, ("INCR", "list")), (0, ("APPEND", "list", "x")),
        (0, ("INCR", "k")), (0, ("EXEC",)), (0, ("SET", "list", "now a string")), (0, ("GET", "list")),
    ])


@PROTOCOLS
def test_scan_pages_through_redis_under_the_prefix(servers, proto):
    ref = redis.Redis(port=servers.reference.port, protocol=proto)
    ours = redis.Redis(port=servers.ours.port, protocol=proto)
    backing = redis.Redis(port=servers.backing.port)
    try:
        for c in (ref, ours):
            c.flushdb()
            c.mset({f"scan:{i}": i for i in range(60)} | {f"other:{i}": i for i in range(20)})
        ref.rpush("scan:list", "x")
        backing.rpush(PREFIX + "scan:list", "x")
        backing.mset({f"scan:outside:{i}": i for i in range(20)})     # not under the prefix: never seen
        for match, kind in (("scan:*", None), ("*", None), ("scan:?", None), ("scan:*", "list"), ("*", "string")):
            seen = []
            for c in (ref, ours):
                cursor, keys, pages = 0, [], 0
                while True:
                    cursor, page = c.scan(cursor, match=match, count=7, _type=kind)
                    keys += page
                    pages += 1
                    if cursor == 0:
                        break
                seen.append((sorted(set(keys)), pages > 1 or kind == "list"))
            assert seen[1] == seen[0], (match, kind)
            assert not any(k.startswith(b"scan:outside") for k in seen[1][0])
        cursor, page = ours.scan(0, match="scan:*", count=7)
        assert cursor != 0, "paging: a first page of 7 slots over ~100 keys is not the last"
        # the cursor is Redis's own: the backing Redis's SCAN under the prefix gives the same page
        direct_cursor, direct_page = backing.scan(0, match=PREFIX + "scan:*", count=7)
        assert (cursor, sorted(page)) == (direct_cursor, sorted(k[len(PREFIX):] for k in direct_page))
        assert ours.scan(cursor, match="scan:*", count=7)[0] == backing.scan(cursor, match=PREFIX + "scan:*",
                                                                             count=7)[0]
        assert sorted(ref.keys("scan:1*")) == sorted(ours.keys("scan:1*"))
    finally:
        for c in (ref, ours, backing):
            c.close()


@PROTOCOLS
def test_dbsize_and_info_keyspace_count_expiring_keys(servers, proto):
    same(servers, proto, by(0, ("MSET", "a", "1", "b", "2", "c", "3"), ("EXPIRE", "a", "100"),
                            ("SET", "d", "4", "PX", "100000"), ("DBSIZE",), ("MULTI",), ("DBSIZE",),
                            ("EXPIRE", "b", "100"), ("DBSIZE",), ("EXEC",)))
    lines = []
    for port in (servers.reference.port, servers.ours.port):
        c = Raw(port, proto)
        text = c.call("INFO", "keyspace").decode()
        c.close()
        lines.append([line.split(",avg_ttl")[0] for line in text.split("\r\n") if line.startswith("db0:")])
    assert lines[1] == lines[0] == ["db0:keys=4,expires=3"]


def test_many_clients_transactions_with_a_direct_writer_lose_no_update(servers):
    """6 clients x 40 WATCH/GET/MULTI/SET/EXEC bumps, retried on conflict, while a client of the backing
    Redis INCRs the same key 100 times: the count is exact, as on redis."""
    clients, rounds, direct = 6, 40, 100

    def bump(port: int) -> None:
        c = redis.Redis(port=port, socket_timeout=10)

        def step(pipe: Any) -> None:
            value = int(pipe.get("n") or 0)
            pipe.multi()
            pipe.set("n", value + 1)
            pipe.incr("plain")

        for _ in range(rounds):
            c.transaction(step, "n")
        c.close()

    def incr(port: int, key: str) -> None:
        c = redis.Redis(port=port, socket_timeout=10)
        for _ in range(direct):
            c.incr(key)
        c.close()

    for port, direct_port, key in ((servers.reference.port, servers.reference.port, "n"),
                                   (servers.ours.port, servers.backing.port, PREFIX + "n")):
        c = redis.Redis(port=port)
        c.delete("n", "plain")
        threads = [threading.Thread(target=bump, args=(port,)) for _ in range(clients)]
        threads.append(threading.Thread(target=incr, args=(direct_port, key)))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert c.get("n") == b"%d" % (clients * rounds + direct), port
        assert c.get("plain") == b"%d" % (clients * rounds)
        c.close()


def test_a_client_that_disconnects_while_watching_gives_its_connection_back(servers):
    """More watching clients come and go than the engine has connections: each one's pinned connection
    goes back to the pool when it leaves, so the port keeps serving."""
    slots = servers.storage.max_connections
    for _ in range(slots + 5):
        c = Raw(servers.ours.port, 2)
        assert c.call("WATCH", "gone") == b"+OK\r\n"
        c.close()
    deadline = time.monotonic() + 10
    while servers.storage._slots._value < slots and time.monotonic() < deadline:
        time.sleep(0.05)
    assert servers.storage._slots._value == slots
    c = redis.Redis(port=servers.ours.port, socket_timeout=10)
    assert c.set("after", "1") and c.get("after") == b"1"
    c.close()
