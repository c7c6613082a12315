"""A plugin's own health (``Plugin.health()``) in get_health_status(): RedisStorage and RateLimit say
when their Redis is gone (a real redis-server stopped and started again), and a bad health() is named."""

from __future__ import annotations

import pytest

from covet_pipe import MiddlewarePlugin, PluginManager
from covet_pipe.builtin import RateLimit, RedisStorage, StorageUnavailableError
from tests._redis import RealRedis, real_redis  # noqa: F401  (fixture)


class Says(MiddlewarePlugin):
    name = "says"
    version = "1.0.0"

    def __init__(self, answer) -> None:
        self.answer = answer

    def health(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_redis_storage_is_degraded_while_redis_is_down_and_ok_when_it_is_back(real_redis: RealRedis) -> None:
    manager = PluginManager()
    manager.register(RedisStorage(url=real_redis.url, timeout=1.0))
    await manager.initialize_all()
    try:
        store = manager.get_storage_engine("redis")
        await store.set("k", b"v")
        health = await manager.get_health_status()
        assert health["status"] == "ok" and health["plugins"]["redis"]["health"]["status"] == "ok"
        real_redis.stop()
        with pytest.raises(StorageUnavailableError):
            await store.get("k")
        health = await manager.get_health_status()
        assert health["status"] == "degraded"
        own = health["plugins"]["redis"]["health"]
        assert own["status"] == "degraded" and "cannot reach Redis at redis://127.0.0.1:" in own["reason"]
        real_redis.start()
        for _ in range(3):                   # the first call after a restart may meet a closed connection
            try:
                await store.get("k")
                break
            except StorageUnavailableError:
                pass
        assert (await manager.get_health_status())["status"] == "ok"
    finally:
        await manager.shutdown_all()


async def test_rate_limit_in_redis_mode_is_degraded_while_its_redis_is_down(real_redis: RealRedis) -> None:
    from tests._helpers import asgi_call, echo_app
    from covet_pipe import wrap

    manager = PluginManager()
    manager.register(RateLimit(limit="1000/second", storage=real_redis.url, failure_policy="open"))
    await manager.initialize_all()
    app = wrap(echo_app, manager)
    try:
        assert (await asgi_call(app, "/")).status == 200
        assert (await manager.get_health_status())["status"] == "ok"
        real_redis.stop()
        assert (await asgi_call(app, "/")).status == 200          # open: let through
        health = await manager.get_health_status()
        [name] = [n for n in health["plugins"] if n != "redis"]
        assert health["status"] == "degraded" and "failure_policy 'open'" in health["plugins"][name]["health"]["reason"]
    finally:
        await manager.shutdown_all()


@pytest.mark.parametrize("answer, status, reason", [
    (None, "ok", None),
    ({"status": "ok", "reason": "fine"}, "ok", "fine"),
    ({"status": "degraded", "reason": "backend \x1b[31mgone"}, "degraded", "backend \\x1b[31mgone"),
    (RuntimeError("boom"), "degraded", "health() raised RuntimeError"),
    ("yes", "degraded", "health() returned something other than None"),
])
async def test_what_health_returns_is_checked(answer, status, reason) -> None:
    manager = PluginManager()
    manager.register(Says(answer))
    await manager.initialize_all()
    health = await manager.get_health_status()
    assert health["status"] == status
    own = health["plugins"]["says"].get("health")
    assert (own is None) if reason is None else own["reason"].startswith(reason), own
