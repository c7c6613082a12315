"""The string and key commands, byte for byte against a real redis-server, in RESP2 and RESP3.

Each sequence goes over raw sockets to a real redis-server and to our RESP port; every reply's bytes
must be equal. Our port runs over MemoryStorage and over RedisStorage (on a second redis-server, with
a key prefix), so both engines' atomic operations (incr_by, append, get_set, get_del, set_many, keys,
flush) are checked. Replies that depend on the moment (TIME, INFO, KEYS order) are compared by meaning.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Iterator

import pytest
import redis

from covet_pipe import StoragePlugin
from covet_pipe.builtin import RedisStorage, RespProtocol
from tests.server._resp_fixtures import OurResp, RealRedis, need_redis, start_ours
from tests.server._resp_reader import ReplyReader

LLONG_MAX = str(2 ** 63 - 1)


class Pair:
    """A real redis-server and our port (over *engine*), both with FLUSHDB allowed."""

    def __init__(self, engine: str) -> None:
        self.real = RealRedis()
        self.backing = RealRedis() if engine == "redis" else None
        storage = RedisStorage(self.backing.url, key_prefix="p:", timeout=5.0) if self.backing else None
        self.ours: OurResp = start_ours(resp=RespProtocol(allow_flush=True), storage=storage)

    def stop(self) -> None:
        self.ours.stop()
        self.real.stop()
        if self.backing:
            self.backing.stop()


@pytest.fixture(scope="module", params=["memory", "redis"])
def pair(request: Any) -> Iterator[Pair]:
    need_redis()
    p = Pair(request.param)
    try:
        yield p
    finally:
        p.stop()


class Raw:
    """One raw RESP connection: ``call(*words)`` returns the reply's exact bytes."""

    def __init__(self, port: int, proto: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = ReplyReader()
        if proto == 3:
            self.call("HELLO", "3")

    def call(self, *words: Any) -> bytes:
        parts = [w if isinstance(w, bytes) else str(w).encode() for w in words]
        self.sock.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        deadline = time.monotonic() + 10
        while True:
            before = len(self.reader._buf)
            value = self.reader.get()
            if value is not ...:
                consumed = before - len(self.reader._buf)
                return self._take(consumed)
            assert time.monotonic() < deadline, "no reply within 10 s"
            data = self.sock.recv(65536)
            assert data, "connection closed"
            self._raw += data
            self.reader.feed(data)

    _raw = b""

    def _take(self, n: int) -> bytes:
        out, self._raw = self._raw[:n], self._raw[n:]
        return out

    def close(self) -> None:
        self.sock.close()


def same(pair: Pair, proto: int, commands: list[tuple[Any, ...]]) -> None:
    real, ours = Raw(pair.real.port, proto), Raw(pair.ours.port, proto)
    try:
        for words in commands:
            a, b = real.call(*words), ours.call(*words)
            assert b == a, f"{words!r}: redis {a!r}, ours {b!r}"
    finally:
        real.close()
        ours.close()


PROTOCOLS = pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])


@PROTOCOLS
def test_counters_byte_for_byte(pair, proto):
    k, f, s = f"c{proto}", f"f{proto}", f"s{proto}"
    same(pair, proto, [
        ("DEL", k, f, s), ("INCR", k), ("INCR", k), ("INCRBY", k, 10), ("DECR", k), ("DECRBY", k, 5),
        ("DECRBY", k, -3), ("INCRBY", k, "x"), ("INCRBY", k, "01"), ("INCRBY", k, " 1"), ("INCRBY", k, "+1"),
        ("INCRBY", k, LLONG_MAX), ("GET", k), ("DECRBY", k, str(-2 ** 63)), ("SET", s, "abc"),
        ("INCR", s), ("DECR", s), ("SET", s, "007"), ("INCR", s), ("SET", s, "-0"), ("INCR", s),
        ("SET", s, LLONG_MAX), ("INCR", s), ("SET", s, str(-2 ** 63)), ("DECR", s), ("INCR", s),
        ("INCRBYFLOAT", f, "10.5"), ("INCRBYFLOAT", f, "0.1"), ("INCRBYFLOAT", f, "-5"),
        ("INCRBYFLOAT", f, "5.0e3"), ("INCRBYFLOAT", f, "abc"), ("INCRBYFLOAT", f, "inf"),
        ("INCRBYFLOAT", f, "-5010.6"), ("GET", f), ("INCRBYFLOAT", s, "1"), ("SET", s, "x"),
        ("INCRBYFLOAT", s, "1"), ("INCR",), ("INCRBY", k), ("INCRBYFLOAT", k, 1, 2),
        ("SETEX", k, 100, "5"), ("INCR", k), ("TTL", k), ("APPEND", k, "0"), ("TTL", k), ("GET", k),
    ])


@PROTOCOLS
def test_string_commands_byte_for_byte(pair, proto):
    a, b, n = f"a{proto}", f"b{proto}", f"none{proto}"
    same(pair, proto, [
        ("DEL", a, b, n), ("APPEND", a, "x"), ("APPEND", a, "yz"), ("STRLEN", a), ("STRLEN", n),
        ("APPEND", a, b"\x00\xff"), ("GET", a), ("GETSET", a, "new"), ("GETSET", n + "x", "v"),
        ("DEL", n + "x"), ("GETDEL", a), ("GETDEL", a), ("SETNX", a, "1"), ("SETNX", a, "2"), ("GET", a),
        ("MSET", a, "1", b, "2"), ("MGET", a, b, n), ("MSET", a), ("MSET", a, "1", b), ("MSETNX", a, "3", n, "4"),
        ("MGET", a, n), ("MSETNX", n, "4", n + "y", "5"), ("MGET", n, n + "y"), ("DEL", n, n + "y"),
        ("MSETNX", a), ("MGET",), ("SETNX", a), ("GETSET", a), ("SETEX", a, 100, "v"), ("TTL", a),
        ("GETSET", a, "w"), ("TTL", a), ("TYPE", a), ("TYPE", n), ("STRLEN", a),
    ])


@PROTOCOLS
def test_expiry_commands_byte_for_byte(pair, proto):
    k, g, n = f"e{proto}", f"g{proto}", f"none{proto}"
    at = str(int(time.time()) + 1000)
    same(pair, proto, [
        ("DEL", k, g, n), ("SETEX", k, 100, "v"), ("TTL", k), ("SETEX", k, 0, "v"), ("SETEX", k, -1, "v"),
        ("SETEX", k, "abc", "v"), ("SETEX", k, LLONG_MAX, "v"), ("PSETEX", k, 0, "v"),
        ("PSETEX", k, LLONG_MAX, "v"), ("PSETEX", k, 100000, "v"), ("TTL", k),
        ("SET", k, "v", "EX", 100, "EX", 200), ("TTL", k), ("SET", k, "v", "EX", 100, "PX", 100),
        ("SET", k, "v", "EX", LLONG_MAX), ("SET", k, "v", "PX", LLONG_MAX), ("SET", k, "v", "KEEPTTL", "KEEPTTL"),
        ("TTL", k), ("PERSIST", k), ("TTL", k), ("PERSIST", k), ("PERSIST", n), ("PEXPIRE", k, 100000),
        ("TTL", k), ("EXPIREAT", k, at), ("EXPIRETIME", k), ("PEXPIREAT", k, at + "000"), ("EXPIRETIME", k),
        ("EXPIRETIME", n), ("PERSIST", k), ("EXPIRETIME", k), ("EXPIRE", k, LLONG_MAX), ("PEXPIRE", k, LLONG_MAX),
        ("EXPIREAT", k, LLONG_MAX), ("EXPIRE", k, str(-2 ** 63)),
        ("EXPIRE", k, 100, "XX", "NX"), ("EXPIRE", k, 100, "GT", "LT"), ("EXPIRE", k, 100, "FOO"),
        ("EXPIRE", k, "x", "FOO"), ("PEXPIRE", k, 100000, "XX"), ("PEXPIRE", k, 100000, "NX"),
        ("EXPIRE", k, 500, "GT"), ("TTL", k), ("EXPIRE", k, 50, "LT"), ("TTL", k), ("EXPIRE", k, 60, "LT"),
        ("EXPIREAT", n, at), ("PEXPIRE", n, 100), ("EXPIREAT", k, 1), ("EXISTS", k),
        ("SET", k, "v"), ("PEXPIREAT", k, 1), ("GET", k),
        ("SET", g, "v"), ("GETEX", g), ("GETEX", g, "EX", 100), ("TTL", g), ("GETEX", g, "PERSIST"), ("TTL", g),
        ("GETEX", g, "PX", 200000, "PX", 300000), ("TTL", g), ("GETEX", g, "EX", 0), ("GETEX", g, "EX", LLONG_MAX),
        ("GETEX", g, "EX", 10, "PX", 10), ("GETEX", g, "EX"), ("GETEX", g, "FOO"), ("GETEX", n, "EX", 10),
        ("GETEX", g, "EXAT", at), ("EXPIRETIME", g), ("GETEX", g, "PXAT", 1), ("GET", g),
        ("PERSIST",), ("EXPIRETIME", k, k), ("TYPE",),
    ])


def test_pexpiretime_is_the_time_set_within_50_ms(pair):
    at = int(time.time() * 1000) + 500_000
    c = redis.Redis(port=pair.ours.port)
    c.set("pat", "v")
    assert c.pexpireat("pat", at) is True
    assert abs(c.pexpiretime("pat") - at) <= 50
    c.close()


@PROTOCOLS
def test_keyspace_commands_byte_for_byte(pair, proto):
    same(pair, proto, [
        ("FLUSHDB",), ("DBSIZE",), ("KEYS", "*"), ("MSET", "ka", "1", "kb", "2", "x[y", "3"), ("DBSIZE",),
        ("KEYS", "x\\[*"), ("KEYS", "nomatch*"), ("SCAN", "0", "MATCH", "x*"), ("SCAN", "0", "TYPE", "list"),
        ("SCAN", "0", "COUNT", "0"), ("SCAN", "0", "COUNT", "x"), ("SCAN", "x"), ("SCAN", "0", "MATCH"),
        ("SCAN", "0", "FOO", "1"), ("FLUSHDB", "SYNC"), ("FLUSHDB", "BAD"), ("DBSIZE",),
        ("SET", "k", "v"), ("FLUSHALL", "ASYNC"), ("DBSIZE",), ("DBSIZE", "x"),
    ])
    real = redis.Redis(port=pair.real.port, protocol=proto)
    ours = redis.Redis(port=pair.ours.port, protocol=proto)
    try:
        for c in (real, ours):
            c.mset({"ka": "1", "kb": "2", "z": "3"})
        assert sorted(ours.keys("k*")) == sorted(real.keys("k*")) == [b"ka", b"kb"]
        assert sorted(ours.scan_iter(match="k?", count=1)) == sorted(real.scan_iter(match="k?", count=1))
        assert sorted(ours.scan_iter(_type="string")) == sorted(real.scan_iter(_type="string"))
        assert ours.dbsize() == real.dbsize() == 3
    finally:
        real.close()
        ours.close()


@PROTOCOLS
def test_time_and_info_read_as_redis_py_reads_them(pair, proto):
    ours = redis.Redis(port=pair.ours.port, protocol=proto)
    real = redis.Redis(port=pair.real.port, protocol=proto)
    try:
        ours.flushdb()
        ours.set("one", "1")
        seconds, micros = ours.time()
        assert abs(seconds + micros / 1e6 - time.time()) < 5 and 0 <= micros < 1_000_000
        info = ours.info()
        assert set(real.info()) >= {"redis_version", "connected_clients", "used_memory"}
        assert info["redis_version"] == "7.0.0" and info["connected_clients"] >= 1
        assert info["used_memory"] > 0 and info["db0"]["keys"] == 1
        assert set(ours.info("keyspace")) == {"db0"}
        assert "connected_clients" in ours.info("clients") and "redis_version" not in ours.info("clients")
    finally:
        ours.close()
        real.close()


def test_flush_is_refused_unless_the_operator_allows_it():
    need_redis()
    server = start_ours()
    try:
        c = redis.Redis(port=server.port)
        c.set("kept", "1")
        for cmd in ("FLUSHDB", "FLUSHALL"):
            with pytest.raises(redis.ResponseError, match=f"{cmd} is disabled.*allow_flush=True"):
                c.execute_command(cmd)
        assert c.get("kept") == b"1" and c.dbsize() == 1
        c.close()
    finally:
        server.stop()
    with pytest.raises(ValueError, match="allow_flush"):
        RespProtocol(allow_flush="yes")  # type: ignore[arg-type]


class _GetSetOnly(StoragePlugin):
    """An engine with only the required methods: the optional commands must name it and the method."""

    name = "minimal"
    version = "1.0.0"
    suspends = False

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def exists(self, key: str) -> bool:
        return key in self.data


def test_commands_an_engine_cannot_serve_name_the_command_and_the_engine():
    server = start_ours(storage=_GetSetOnly())
    try:
        c = redis.Redis(port=server.port)
        for args, method in ((("INCR", "k"), "incr_by"), (("APPEND", "k", "v"), "append"),
                             (("MSET", "a", "1"), "set_many"), (("KEYS", "*"), "keys"), (("GETDEL", "k"), "get_del")):
            with pytest.raises(redis.ResponseError) as info:
                c.execute_command(*args)
            text = str(info.value)
            assert text.startswith(args[0].lower() + ":") and "_GetSetOnly" in text and method in text
        assert c.set("k", "v") and c.get("k") == b"v"      # it keeps serving
        c.close()
    finally:
        server.stop()


def test_many_clients_incr_and_append_lose_no_update(pair):
    """8 clients x 200 INCRs and APPENDs at once: the totals are exact on both, as on redis."""
    clients, rounds = 8, 200

    def hammer(port: int) -> None:
        c = redis.Redis(port=port, socket_timeout=10)
        for _ in range(rounds):
            c.incr("many")
            c.append("many-log", "x")
            c.incrbyfloat("many-f", "0.5")
        c.close()

    for port in (pair.real.port, pair.ours.port):
        c = redis.Redis(port=port)
        c.delete("many", "many-log", "many-f")
        threads = [threading.Thread(target=hammer, args=(port,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert c.get("many") == b"%d" % (clients * rounds)
        assert c.strlen("many-log") == clients * rounds
        assert c.get("many-f") == b"%d" % (clients * rounds // 2)
        c.close()
