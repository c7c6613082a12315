"""MemoryStorage: get/set/delete/exists, TTL expiry, bytes only, max_keys."""

from __future__ import annotations

import asyncio

import pytest

from covet_pipe import PluginManager
from covet_pipe.builtin import MemoryStorage, StorageFullError

SHORT = 0.05
#: generous, so a busy machine does not make the expiry tests flaky
WAIT = SHORT * 4


async def test_set_then_get_returns_value_and_exists():
    store = MemoryStorage()
    await store.set("a", b"1")
    assert await store.get("a") == b"1"
    assert await store.exists("a") is True


async def test_get_missing_key_returns_none_and_not_exists():
    store = MemoryStorage()
    assert await store.get("nope") is None
    assert await store.exists("nope") is False


async def test_set_existing_key_overwrites_value():
    store = MemoryStorage()
    await store.set("a", b"1")
    await store.set("a", b"2")
    assert await store.get("a") == b"2"
    assert len(store) == 1


async def test_delete_returns_whether_key_was_there():
    store = MemoryStorage()
    await store.set("a", b"1")
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None


async def test_key_with_ttl_expires_for_get_exists_and_delete():
    store = MemoryStorage()
    await store.set("gone", b"x", ttl=SHORT)
    await store.set("kept", b"y", ttl=60)
    assert await store.get("gone") == b"x"
    await asyncio.sleep(WAIT)
    assert await store.get("gone") is None
    assert await store.exists("gone") is False
    assert await store.delete("gone") is False
    assert await store.get("kept") == b"y"


async def test_expired_key_reports_delete_false_without_a_read_first():
    store = MemoryStorage()
    await store.set("gone", b"x", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.delete("gone") is False


async def test_overwrite_without_ttl_makes_key_permanent():
    store = MemoryStorage()
    await store.set("a", b"old", ttl=SHORT)
    await store.set("a", b"new")
    await asyncio.sleep(WAIT)
    await store.set("other", b"z")           # a write sweeps expired deadlines: the stale one must not hit "a"
    assert await store.get("a") == b"new"


async def test_overwrite_with_longer_ttl_extends_life():
    store = MemoryStorage()
    await store.set("a", b"1", ttl=SHORT)
    await store.set("a", b"2", ttl=60)
    await asyncio.sleep(WAIT)
    await store.set("b", b"")
    assert await store.get("a") == b"2"


async def test_writes_drop_expired_keys_nobody_reads():
    store = MemoryStorage()
    for i in range(10):
        await store.set(f"k{i}", b"v", ttl=SHORT)
    await asyncio.sleep(WAIT)
    await store.set("fresh", b"v")
    assert len(store) == 1


async def test_bytearray_value_is_stored_as_an_independent_bytes_copy():
    store = MemoryStorage()
    buf = bytearray(b"abc")
    await store.set("a", buf)
    buf[0] = ord("z")
    assert await store.get("a") == b"abc"
    assert type(await store.get("a")) is bytes


@pytest.mark.parametrize(("value", "message"), [
    ("text", r"value must be bytes, got str; encode it first"),
    (42, r"value must be bytes, got int$"),
    (None, r"value must be bytes, got NoneType"),
], ids=["str", "int", "none"])
async def test_set_non_bytes_value_raises_typeerror(value, message):
    store = MemoryStorage()
    with pytest.raises(TypeError, match=message):
        await store.set("a", value)
    assert await store.exists("a") is False


@pytest.mark.parametrize("op", ["get", "exists", "delete"])
async def test_non_str_key_raises_typeerror(op):
    with pytest.raises(TypeError, match="keys are str, got bytes"):
        await getattr(MemoryStorage(), op)(b"a")


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "10"],
                         ids=["zero", "negative", "nan", "inf", "bool", "str"])
async def test_set_bad_ttl_raises_valueerror(ttl):
    with pytest.raises(ValueError, match="expected seconds > 0 such as 60, or None"):
        await MemoryStorage().set("a", b"1", ttl=ttl)


async def test_full_store_refuses_new_key_naming_max_keys():
    store = MemoryStorage(max_keys=2)
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.set("a", b"3")                # overwriting needs no room
    with pytest.raises(StorageFullError, match=r"max_keys=2 keys, so 'c' was not stored.*evict=True"):
        await store.set("c", b"4")
    assert await store.exists("c") is False


async def test_full_store_makes_room_from_expired_keys_first():
    store = MemoryStorage(max_keys=2)
    await store.set("a", b"1", ttl=SHORT)
    await store.set("b", b"2")
    await asyncio.sleep(WAIT)
    await store.set("c", b"3")
    assert await store.get("b") == b"2" and await store.get("c") == b"3"


async def test_evicting_store_drops_least_recently_used_key():
    store = MemoryStorage(max_keys=2, evict=True)
    await store.set("a", b"1")
    await store.set("b", b"2")
    await store.get("a")                      # "b" is now the least recently used
    await store.set("c", b"3")
    assert await store.exists("b") is False
    assert await store.get("a") == b"1" and await store.get("c") == b"3"


@pytest.mark.parametrize("max_keys", [0, -5, 1.5, True], ids=["zero", "negative", "float", "bool"])
def test_bad_max_keys_raises_valueerror(max_keys):
    with pytest.raises(ValueError, match="expected a number of keys >= 1 such as 10000"):
        MemoryStorage(max_keys=max_keys)


async def test_registered_as_memory_engine_and_cleared_on_shutdown():
    manager = PluginManager()
    manager.register(MemoryStorage())
    await manager.initialize_all()
    store = manager.get_storage_engine("memory")
    await store.set("session", b"data")
    await manager.shutdown_all()
    assert await store.exists("session") is False
