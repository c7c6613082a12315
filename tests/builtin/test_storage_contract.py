"""The StoragePlugin contract, one suite for every engine: ``memory`` (MemoryStorage) and ``redis``
(RedisStorage on a real redis-server on a free 127.0.0.1 port).

What an engine-specific feature does (MemoryStorage's max_keys and eviction, RedisStorage's outages) is
tested beside the engine; here is what a plugin may rely on whichever engine it is given.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, AsyncIterator, Iterator

import pytest

from covet_pipe import PluginManager, StoragePlugin
from covet_pipe.builtin import MemoryStorage, RedisStorage
from tests._redis import RealRedis, need_redis

SHORT = 0.2
#: generous, so a busy machine does not make the expiry tests flaky
WAIT = SHORT * 3
ENGINES = ["memory", "redis"]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RealRedis]:
    need_redis()
    server = RealRedis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=ENGINES)
async def managed(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PluginManager, str]]:
    """A PluginManager that registered and started the engine, and the engine's name."""
    manager = PluginManager()
    if request.param == "memory":
        manager.register(MemoryStorage())
    else:
        server: RealRedis = request.getfixturevalue("redis_server")
        # a prefix per test: the tests share one server, and none sees another's keys
        manager.register(RedisStorage(server.url, key_prefix=f"{request.node.name}:"))
    await manager.initialize_all()
    try:
        yield manager, request.param
    finally:
        await manager.shutdown_all()


@pytest.fixture
def store(managed: tuple[PluginManager, str]) -> StoragePlugin:
    """The engine as a plugin is given it (the counting view)."""
    manager, name = managed
    return manager.get_storage_engine(name)  # type: ignore[no-any-return]


async def test_set_then_get_returns_the_value_and_exists(store):
    await store.set("a", b"1")
    assert await store.get("a") == b"1"
    assert await store.exists("a") is True


async def test_missing_key_gets_none_and_does_not_exist(store):
    assert await store.get("nope") is None
    assert await store.exists("nope") is False


async def test_binary_values_and_keys_round_trip_exactly(store):
    every_byte = bytes(range(256)) * 4
    await store.set("bin", every_byte)
    await store.set("empty", b"")
    await store.set("k\x00\xff\u20ac\ud800 x", b"\r\n$-1\r\n")   # NUL, latin-1, non-latin-1, a lone surrogate
    assert await store.get("bin") == every_byte
    assert await store.get("empty") == b"" and await store.exists("empty") is True
    assert await store.get("k\x00\xff\u20ac\ud800 x") == b"\r\n$-1\r\n"
    assert await store.get("k\x00\xff\u20ac x") is None     # a different key
    got = await store.get("bin")
    assert type(got) is bytes


async def test_bytearray_and_memoryview_values_are_stored_as_bytes_copies(store):
    buf = bytearray(b"abc")
    await store.set("ba", buf)
    await store.set("mv", memoryview(b"xyz"))
    buf[0] = ord("Z")
    assert await store.get("ba") == b"abc" and type(await store.get("ba")) is bytes
    assert await store.get("mv") == b"xyz"


async def test_set_overwrites(store):
    await store.set("a", b"1")
    await store.set("a", b"2")
    assert await store.get("a") == b"2"


async def test_delete_says_whether_the_key_was_there(store):
    await store.set("a", b"1")
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None and await store.exists("a") is False


async def test_a_key_with_a_ttl_expires_for_get_exists_delete_and_ttl(store):
    await store.set("gone", b"x", ttl=SHORT)
    await store.set("kept", b"y", ttl=60)
    assert await store.get("gone") == b"x"
    await asyncio.sleep(WAIT)
    assert await store.get("gone") is None
    assert await store.exists("gone") is False
    assert await store.delete("gone") is False
    assert await store.ttl("gone") is None
    assert await store.get("kept") == b"y"


async def test_overwrite_without_ttl_makes_the_key_permanent(store):
    await store.set("a", b"1", ttl=SHORT)
    await store.set("a", b"2")
    assert await store.ttl("a") == math.inf
    await asyncio.sleep(WAIT)
    assert await store.get("a") == b"2"


async def test_ttl_is_none_for_no_key_inf_for_no_expiry_and_the_seconds_left_otherwise(store):
    assert await store.ttl("nope") is None
    await store.set("forever", b"1")
    assert await store.ttl("forever") == math.inf
    await store.set("soon", b"1", ttl=30)
    left = await store.ttl("soon")
    assert isinstance(left, float) and 25 < left <= 30


async def test_expire_sets_a_deadline_and_the_key_goes_when_it_passes(store):
    await store.set("a", b"1")
    assert await store.expire("a", 30) is True
    assert 25 < await store.ttl("a") <= 30
    assert await store.expire("a", SHORT) is True
    await asyncio.sleep(WAIT)
    assert await store.get("a") is None and await store.ttl("a") is None


async def test_expire_of_a_missing_or_expired_key_is_false(store):
    assert await store.expire("nope", 10) is False
    assert await store.expire("nope", None) is False
    await store.set("gone", b"x", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.expire("gone", 10) is False
    assert await store.get("gone") is None


async def test_expire_none_removes_the_deadline_and_is_true_for_a_key_without_one(store):
    await store.set("a", b"1", ttl=SHORT)
    assert await store.expire("a", None) is True
    assert await store.ttl("a") == math.inf
    await asyncio.sleep(WAIT)
    assert await store.get("a") == b"1"
    assert await store.expire("a", None) is True        # no deadline to remove: still a key, so True


async def test_expire_replaces_an_earlier_deadline_both_ways(store):
    await store.set("a", b"1", ttl=60)
    assert await store.expire("a", SHORT) is True
    await asyncio.sleep(WAIT)
    assert await store.get("a") is None
    await store.set("b", b"1", ttl=SHORT)
    assert await store.expire("b", 60) is True
    await asyncio.sleep(WAIT)
    assert await store.get("b") == b"1" and 55 < await store.ttl("b") <= 60


@pytest.mark.parametrize("op", ["get", "delete", "exists", "ttl", "set", "expire"])
@pytest.mark.parametrize("key", [b"bytes-key", 1, None])
async def test_a_key_that_is_not_str_is_a_type_error(store, op, key):
    args: tuple[Any, ...] = {"set": (key, b"v"), "expire": (key, 10)}.get(op, (key,))
    with pytest.raises(TypeError, match=r"Storage keys are str, got"):
        await getattr(store, op)(*args)


@pytest.mark.parametrize("value, message", [
    ("text", r"value must be bytes, got str; encode it first"),
    (1, r"value must be bytes, got int"),
    (None, r"value must be bytes, got NoneType"),
])
async def test_a_value_that_is_not_bytes_is_a_type_error_and_nothing_is_stored(store, value, message):
    with pytest.raises(TypeError, match=message):
        await store.set("a", value)
    assert await store.exists("a") is False


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, "10", True])
async def test_a_bad_ttl_is_a_value_error_for_set_and_expire(store, ttl):
    with pytest.raises(ValueError, match=r"set\('a', \.\.\., ttl=\.\.\.\): expected seconds > 0"):
        await store.set("a", b"1", ttl=ttl)
    assert await store.exists("a") is False
    await store.set("a", b"1")
    with pytest.raises(ValueError, match=r"expire\('a', ttl=\.\.\.\): expected seconds > 0"):
        await store.expire("a", ttl)
    assert await store.ttl("a") == math.inf


async def test_the_engine_is_found_by_its_name_and_its_calls_and_errors_are_counted(managed):
    manager, name = managed
    store = manager.get_storage_engine(name)
    assert store.name == name and manager.get_storage_engine() is store
    await store.set("a", b"1", ttl=30)
    assert await store.get("a") == b"1"
    with pytest.raises(TypeError):
        await store.get(1)
    assert await store.expire("a", None) is True and await store.ttl("a") == math.inf
    assert await store.delete("a") is True and await store.exists("a") is False
    assert manager.storage_counts()[name] == {"get": (2, 1), "set": (1, 0), "delete": (1, 0), "exists": (1, 0),
                                              "expire": (1, 0), "ttl": (1, 0)}
