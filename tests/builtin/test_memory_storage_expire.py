"""MemoryStorage.expire and .ttl (what RESP's EXPIRE and TTL run on), and the StoragePlugin defaults."""

from __future__ import annotations

import asyncio
import math

import pytest

from covet_pipe import StoragePlugin
from covet_pipe.builtin import MemoryStorage

SHORT = 0.05
WAIT = SHORT * 4


async def test_ttl_of_missing_key_is_none_and_of_key_without_expiry_is_inf():
    store = MemoryStorage()
    assert await store.ttl("nope") is None
    await store.set("a", b"1")
    assert await store.ttl("a") == math.inf


async def test_expire_sets_a_deadline_and_the_key_goes_when_it_passes():
    store = MemoryStorage()
    await store.set("a", b"1")
    assert await store.expire("a", SHORT) is True
    assert 0 < await store.ttl("a") <= SHORT
    await asyncio.sleep(WAIT)
    assert await store.get("a") is None
    assert await store.ttl("a") is None


async def test_expire_missing_or_expired_key_returns_false():
    store = MemoryStorage()
    assert await store.expire("nope", 10) is False
    await store.set("a", b"1", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.expire("a", 10) is False


async def test_expire_none_removes_the_deadline():
    store = MemoryStorage()
    await store.set("a", b"1", ttl=SHORT)
    assert await store.expire("a", None) is True
    await asyncio.sleep(WAIT)
    assert await store.get("a") == b"1" and await store.ttl("a") == math.inf


async def test_expire_replaces_an_earlier_deadline_both_ways():
    store = MemoryStorage()
    await store.set("a", b"1", ttl=SHORT)
    await store.expire("a", 100)
    await asyncio.sleep(WAIT)
    assert await store.get("a") == b"1"
    await store.expire("a", SHORT)
    await asyncio.sleep(WAIT)
    assert await store.get("a") is None


@pytest.mark.parametrize("ttl", [0, -1, math.nan, math.inf, "10", True])
async def test_expire_bad_ttl_raises_value_error(ttl):
    store = MemoryStorage()
    await store.set("a", b"1")
    with pytest.raises(ValueError, match="expected seconds > 0"):
        await store.expire("a", ttl)


class Minimal(StoragePlugin):
    name = "minimal"
    version = "1.0.0"

    async def get(self, key):  # type: ignore[no-untyped-def]
        return None

    async def set(self, key, value, ttl=None):  # type: ignore[no-untyped-def]
        return None

    async def delete(self, key):  # type: ignore[no-untyped-def]
        return False

    async def exists(self, key):  # type: ignore[no-untyped-def]
        return False


async def test_storage_plugin_without_expiry_raises_not_implemented_naming_the_engine():
    with pytest.raises(NotImplementedError, match="Minimal does not support expire"):
        await Minimal().expire("a", 1)
    with pytest.raises(NotImplementedError, match="Minimal does not support ttl"):
        await Minimal().ttl("a")
