"""redis-py's asyncio client (RESP2 and RESP3) against a real redis-server and our RESP port: the same calls,
the same results: a cache's calls, a transactional pipeline, WATCH with a conflict made by a second client, and
many tasks at once on one client's connection pool."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
import redis.asyncio as aredis
from redis.exceptions import ResponseError, WatchError

from tests.server._resp_fixtures import real_and_ours  # noqa: F401 (real_and_ours: a fixture)

PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])


@pytest.fixture(scope="module")
def ports(real_and_ours: tuple[int, int]) -> tuple[int, int]:
    """(real redis port, our port) for the whole module; tests use their own keys."""
    return real_and_ours


def on_both(ports: tuple[int, int], protocol: int, scenario: Callable[[Any, Any], Awaitable[Any]]) -> None:
    """Run *scenario(client, second_client)* against each server on a fresh loop; the results must be equal."""
    async def one(port: int) -> Any:
        a = aredis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
        b = aredis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
        try:
            await a.delete("k", "n", "w", *(f"c{i}" for i in range(20)))
            return await scenario(a, b)
        finally:
            await a.aclose()
            await b.aclose()
    real, ours = (asyncio.run(one(port)) for port in ports)
    assert ours == real, f"redis {real!r}, ours {ours!r}"


@PROTOCOLS
def test_a_caches_calls_give_the_same_results(ports, protocol):
    async def scenario(r: Any, _: Any) -> list[Any]:
        out = [await r.set("k", "v", ex=100), await r.get("k"), await r.set("k", "w", nx=True),
               await r.set("k", "w", xx=True, get=True), await r.ttl("k"), await r.incr("n"),
               await r.incrby("n", 41), await r.mset({"c1": "a", "c2": "b"}), await r.mget("c1", "c2", "c3"),
               await r.getex("c1", px=50_000), await r.exists("k", "c1", "nope"), await r.delete("c1", "c2")]
        try:
            await r.incr("k")
        except ResponseError as exc:
            out.append(str(exc))
        return out
    on_both(ports, protocol, scenario)


@PROTOCOLS
def test_a_transactional_pipeline_gives_the_same_results(ports, protocol):
    async def scenario(r: Any, _: Any) -> list[Any]:
        async with r.pipeline(transaction=True) as pipe:
            pipe.set("k", "1").incr("k").incrby("k", 10).get("k").incr("w").set("w", "x").incr("w")
            results = await pipe.execute(raise_on_error=False)
        return [f"{type(x).__name__}: {x}" if isinstance(x, Exception) else x for x in results]
    on_both(ports, protocol, scenario)


@PROTOCOLS
def test_watch_sees_a_second_clients_write(ports, protocol):
    async def scenario(r: Any, other: Any) -> list[Any]:
        out = []
        async with r.pipeline(transaction=True) as pipe:
            await pipe.watch("w")
            await other.set("w", "changed")          # another client writes between WATCH and EXEC
            pipe.multi()
            pipe.set("w", "mine")
            try:
                await pipe.execute()
            except WatchError:
                out.append("watch error")
        out.append(await r.get("w"))
        async with r.pipeline(transaction=True) as pipe:
            await pipe.watch("w")                    # nobody writes: EXEC runs
            pipe.multi()
            pipe.set("w", "mine")
            out.append(await pipe.execute())
        out.append(await r.get("w"))
        return out
    on_both(ports, protocol, scenario)


@PROTOCOLS
def test_many_tasks_on_one_pool_count_exactly(ports, protocol):
    async def scenario(r: Any, _: Any) -> list[Any]:
        async def bump(i: int) -> None:
            for _ in range(25):
                await r.incr("n")
                await r.set(f"c{i}", i)
        await asyncio.gather(*(bump(i) for i in range(20)))
        return [await r.get("n"), sorted(await r.mget(*(f"c{i}" for i in range(20))))]
    on_both(ports, protocol, scenario)
