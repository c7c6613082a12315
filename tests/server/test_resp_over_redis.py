"""Our RESP protocol over RedisStorage: redis-py against our RESP port, whose storage engine is a
RedisStorage on a real redis-server (the *backing* one), gets the replies a real redis-server (the
*reference*) gives; the data is the backing Redis's, shared with its other clients; and when the backing
Redis stops, each command is an ``-ERR`` naming the engine, until it is back."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import redis

from tests._redis import RedisBacked, need_redis, redis_backed

PREFIX = "resp:"
WAIT = 1.0


@pytest.fixture(scope="module")
def servers() -> Iterator[RedisBacked]:
    yield from redis_backed(prefix=PREFIX, timeout=2.0)


def outcome(client: redis.Redis, *args: Any) -> Any:
    try:
        return ("ok", client.execute_command(*args))
    except redis.RedisError as exc:
        return (type(exc).__name__, str(exc))


def both(servers: RedisBacked, protocol: int, commands: list[tuple], *, wait: dict[int, float] | None = None) -> None:
    ref = redis.Redis(port=servers.reference.port, protocol=protocol, socket_timeout=10)
    ours = redis.Redis(port=servers.ours.port, protocol=protocol, socket_timeout=10)
    try:
        for i, args in enumerate(commands):
            if wait and i in wait:
                time.sleep(wait[i])
            a, b = outcome(ref, *args), outcome(ours, *args)
            assert b == a, f"{args!r}: redis {a!r}, ours over RedisStorage {b!r}"
    finally:
        ref.close()
        ours.close()


PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])


@PROTOCOLS
def test_data_commands_give_the_replies_a_real_redis_gives(servers, protocol):
    k, j = f"data{protocol}", f"other{protocol}"
    both(servers, protocol, [
        ("GET", k), ("SET", k, "v1"), ("GET", k), ("SET", k, "v2", "XX", "GET"), ("SET", k, "v3", "NX"),
        ("SET", j, "x", "NX"), ("EXISTS", k, k, j, "nope"), ("TTL", k), ("PTTL", "nope"),
        ("EXPIRE", k, "100"), ("TTL", k), ("EXPIRE", k, "50", "GT"), ("EXPIRE", k, "50", "LT"), ("TTL", k),
        ("SET", k, "v4", "KEEPTTL"), ("TTL", k), ("SET", k, "v5"), ("TTL", k), ("EXPIRE", k, "0"), ("GET", k),
        ("SET", k, "v6", "EX", "100"), ("TTL", k), ("SET", k, "v7", "PX", "100000"), ("TTL", k),
        ("DEL", k, j, "nope"), ("GET", k), ("EXISTS", k),
    ])


@PROTOCOLS
def test_binary_keys_and_values_and_a_short_expiry_are_the_same(servers, protocol):
    k = b"bin\x00\xff\r\n" + bytes([protocol])
    value = bytes(range(256))
    both(servers, protocol, [
        ("SET", k, value), ("GET", k), ("EXISTS", k), ("SET", k, b"", "PX", "400"), ("GET", k),
        ("GET", k), ("EXISTS", k), ("TTL", k),
    ], wait={5: WAIT})


def test_the_data_is_the_backing_redis_shared_with_its_other_clients(servers):
    ours = redis.Redis(port=servers.ours.port)
    backing = redis.Redis(port=servers.backing.port)
    try:
        assert ours.set("shared", b"from-resp", ex=100) is True
        assert backing.get(PREFIX + "shared") == b"from-resp"      # under the engine's key prefix
        assert 0 < backing.ttl(PREFIX + "shared") <= 100
        backing.set(PREFIX + "written-elsewhere", b"\x00by another host")
        assert ours.get("written-elsewhere") == b"\x00by another host"
        assert backing.get("shared") is None                          # nothing outside the prefix
    finally:
        ours.close()
        backing.close()


def test_commands_pipelined_over_redis_storage_are_answered_in_order(servers):
    c = redis.Redis(port=servers.ours.port, protocol=3)
    try:
        pipe = c.pipeline(transaction=False)
        for i in range(200):
            pipe.set(f"p{i}", b"%d" % i)
            pipe.get(f"p{i}")
        replies = pipe.execute()
        assert replies == [r for i in range(200) for r in (True, b"%d" % i)]
    finally:
        c.close()


def test_the_backing_redis_stopping_is_an_error_reply_naming_the_engine_and_it_recovers():
    need_redis()
    s = RedisBacked(prefix=PREFIX, timeout=2.0)
    try:
        c = redis.Redis(port=s.ours.port, protocol=3, single_connection_client=True, socket_timeout=10)
        conn_id = c.client_id()
        assert c.set("k", b"v") is True
        s.backing.stop()
        for command in (("GET", "k"), ("SET", "k", "w"), ("DEL", "k"), ("EXISTS", "k"), ("TTL", "k"),
                        ("EXPIRE", "k", "10")):
            with pytest.raises(redis.exceptions.ResponseError) as info:
                c.execute_command(*command)
            text = str(info.value)
            name = command[0].lower()
            assert text.startswith(f"{name}: RedisStorage ({s.backing.url}): "), text
            assert "cannot reach Redis" in text and "Traceback" not in text
        with pytest.raises(redis.exceptions.ResponseError, match=r"^watch: RedisStorage .*cannot reach Redis"):
            c.execute_command("WATCH", "k")
        assert c.execute_command("MULTI") == b"OK"
        c.execute_command("SET", "k", "x")                      # +QUEUED (redis-py's SET reads it as False)
        with pytest.raises(redis.exceptions.ResponseError) as info:
            c.execute_command("EXEC")
        assert str(info.value).startswith(f"exec: RedisStorage ({s.backing.url}): atomic: cannot reach Redis")
        assert c.ping() is True and c.client_id() == conn_id     # our connection stays open and serving
        s.backing.start()                                          # the same port, empty
        assert c.get("k") is None
        assert c.set("k", b"back") is True and c.get("k") == b"back"
        assert c.client_id() == conn_id
        c.close()
    finally:
        s.stop()
