"""The StoragePlugin contract's transactions and compound operations, for every engine (``memory``, and
``redis`` on a real redis-server): ``atomic(ops, watch)``, ``watch``/``unwatch``, ``set_with``, ``get_ex``,
``expire_with``, ``persist``, the many-key calls, ``scan`` and ``key_count``; and for RedisStorage, a
write by another client of its Redis breaking a watch, and the pinned connection going back to the pool."""

from __future__ import annotations

import math
import time

import pytest
import redis.asyncio as redis_asyncio

from covet_pipe.plugin import StorageOp
from covet_pipe.builtin import RedisStorage
from covet_pipe.storage.errors import NotANumberError
from tests._redis import real_redis  # noqa: F401  (a fixture)
from tests.builtin.test_storage_contract import managed, redis_server, store  # noqa: F401  (fixtures)


async def test_atomic_gives_each_op_its_result_or_its_error_in_order(store):
    results = await store.atomic([
        StorageOp("set", ("a", b"1")), StorageOp("incr_by", ("a", 5)), StorageOp("get", ("a",)),
        StorageOp("set", ("t", b"text")), StorageOp("incr_by", ("t", 1)), StorageOp("set", ("b", "not bytes")),
        StorageOp("get", ("b",)), StorageOp("delete_many", (["a", "b", "t"],)),
    ])
    assert results[:4] == [None, 6, b"6", None]
    assert isinstance(results[4], NotANumberError)
    assert isinstance(results[5], TypeError) and "encode it first" in str(results[5])
    assert results[6:] == [None, 2]
    assert await store.atomic([]) == []


async def test_a_watched_key_written_since_makes_atomic_run_nothing(store):
    await store.set("w", b"1")
    held = await store.watch(["w"])
    held = await store.watch(["other"], held)           # a second WATCH adds keys
    await store.set("other", b"x")
    assert await store.atomic([StorageOp("set", ("w", b"lost"))], held) is None
    assert await store.get("w") == b"1"
    held = await store.watch(["w"])
    await store.set("unwatched", b"x")                  # other keys leave the watch alone
    assert await store.atomic([StorageOp("set", ("w", b"2"))], held) == [None]
    assert await store.get("w") == b"2"
    held = await store.watch(["w"])
    await store.unwatch(held)


async def test_set_with_does_set_s_flags(store):
    assert await store.set_with("k", b"1", only_existing=True) == (False, None)
    assert await store.set_with("k", b"1", only_new=True) == (True, None)
    assert await store.set_with("k", b"2", only_new=True, get=True) == (False, b"1")
    assert await store.set_with("k", b"3", px=100_000, get=True) == (True, b"1")
    assert 99 < await store.ttl("k") <= 100
    assert await store.set_with("k", b"4", keep_ttl=True, only_existing=True) == (True, None)
    assert await store.get("k") == b"4" and 99 < await store.ttl("k") <= 100
    at = int(time.time() * 1000) + 500_000
    assert (await store.set_with("k", b"5", pxat=at))[0] is True
    assert 499 < await store.ttl("k") <= 500
    assert await store.set_with("k", b"6", pxat=1, get=True) == (True, b"5")
    assert await store.exists("k") is False             # a time in the past: written, and gone


async def test_get_ex_expire_with_and_persist(store):
    await store.set("g", b"v")
    assert await store.get_ex("g", px=100_000) == b"v" and 99 < await store.ttl("g") <= 100
    assert await store.get_ex("g", persist=True) == b"v" and await store.ttl("g") == math.inf
    assert await store.get_ex("none", px=1000) is None
    assert await store.expire_with("g", px=50_000, flags=frozenset({"XX"})) is False
    assert await store.expire_with("g", px=50_000, flags=frozenset({"NX"})) is True
    assert await store.expire_with("g", px=10_000, flags=frozenset({"GT"})) is False
    assert await store.expire_with("g", px=90_000, flags=frozenset({"GT"})) is True
    assert await store.expire_with("g", px=95_000, flags=frozenset({"LT"})) is False
    assert 89 < await store.ttl("g") <= 90
    at = int(time.time() * 1000) + 300_123
    assert await store.expire_with("g", pxat=at) is True and abs(await store.expire_time("g") - at) <= 1
    assert await store.expire_time("none") is None
    assert await store.persist("g") is True and await store.persist("g") is False
    assert await store.expire_time("g") == math.inf
    assert await store.expire_with("g", pxat=1) is True and await store.exists("g") is False
    assert await store.expire_with("none", px=1000) is False and await store.persist("none") is False


async def test_many_key_calls_scan_and_key_count(store):
    for i in range(30):
        await store.set(f"s{i}", b"%d" % i, 100 if i % 3 == 0 else None)
    assert await store.exists_many(["s1", "s1", "s2", "none"]) == 3
    assert await store.get_many(["s1", "none", "s2"]) == [b"1", None, b"2"]
    assert await store.key_type("s1") == "string" and await store.key_type("none") == "none"
    cursor, seen = 0, []
    while True:
        cursor, page = await store.scan(cursor, "s*", 5)
        seen += page
        if cursor == 0:
            break
    assert sorted(set(seen)) == sorted(f"s{i}" for i in range(30))
    assert await store.scan(0, "*", 1000, "list") == (0, [])
    assert await store.key_count() == (30, 10)
    assert await store.delete_many([f"s{i}" for i in range(30)] + ["none"]) == 30
    assert await store.key_count() == (0, 0)


async def test_redis_watch_sees_a_write_that_bypasses_covet_pipe_and_gives_its_connection_back(redis_server):
    raw = redis_asyncio.Redis.from_url(redis_server.url)
    async with RedisStorage(redis_server.url, key_prefix="atomic:", max_connections=2) as engine:
        try:
            await engine.set("w", b"1")
            held = await engine.watch(["w"])
            assert engine._slots._value == 1                 # the pinned connection holds a slot
            await raw.set("atomic:w", b"direct")             # another application, straight to Redis
            assert await engine.atomic([StorageOp("set", ("w", b"lost"))], held) is None
            assert engine._slots._value == 2 and await engine.get("w") == b"direct"
            held = await engine.watch(["w"])
            await engine.unwatch(held)
            await engine.unwatch(held)                       # twice: nothing more
            assert engine._slots._value == 2
            for _ in range(3):                               # more watches than connections, one after another
                await engine.atomic([StorageOp("incr_by", ("n", 1))], await engine.watch(["n"]))
            assert await engine.get("n") == b"3"
            with pytest.raises(TypeError, match="RedisStorage.watch"):
                await engine.atomic([], {"w": 1})
        finally:
            await raw.aclose()


async def test_redis_without_a_prefix_counts_flushes_and_scans_the_whole_database(real_redis):
    raw = redis_asyncio.Redis.from_url(real_redis.url)
    async with RedisStorage(real_redis.url) as engine:
        try:
            await raw.set("plain", b"1")
            await raw.set("expiring", b"2", ex=100)
            assert await engine.key_count() == (2, 1)
            assert sorted((await engine.scan(0, "*", 100))[1]) == ["expiring", "plain"]
            results = await engine.atomic([StorageOp("key_count"), StorageOp("flush"), StorageOp("key_count")])
            assert results == [(2, 1), None, (0, 0)]
            assert await raw.dbsize() == 0
        finally:
            await raw.aclose()
