"""The fleet's state in Redis: a generation counter, the latest change of each plugin, a channel.

For a fleet named ``N`` (the keys share the hash tag ``{N}``, so they live on one Redis Cluster slot):

- ``covet-pipe:fleet:{N}:generation``: the counter, ``INCR``-ed once per change;
- ``covet-pipe:fleet:{N}:latest``: a hash, plugin name -> the JSON of its latest change;
- ``covet-pipe:fleet:{N}:changes``: the pub/sub channel every change is published on.

:func:`publish` does the three in one Lua step (``EVALSHA``, loaded again on ``NOSCRIPT`` by redis-py's
``Script``), so the counter, the stored change and the published one never disagree, and changes are
published in the order of their generations. :func:`read_state` is what a worker that (re)connects
converges to.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from covet_pipe.fleet.message import Change, FleetMessageError, decode, encode

__all__ = ["Keys", "State", "keys_for", "publish", "publisher", "read_state"]

#: KEYS[1] the counter, KEYS[2] the latest changes; ARGV[1] and ARGV[2] the message before and after its
#: generation, ARGV[3] the plugin, ARGV[4] the channel
_PUBLISH = """
local g = redis.call('INCR', KEYS[1])
local msg = ARGV[1] .. g .. ARGV[2]
redis.call('HSET', KEYS[2], ARGV[3], msg)
redis.call('PUBLISH', ARGV[4], msg)
return g
"""
_MARK = '"generation":0,'


class Keys(NamedTuple):
    generation: str
    latest: str
    channel: str


def keys_for(fleet_name: str) -> Keys:
    """The Redis keys and channel of the fleet *fleet_name*."""
    base = f"covet-pipe:fleet:{{{fleet_name}}}"
    return Keys(f"{base}:generation", f"{base}:latest", f"{base}:changes")


def publisher(client: Any) -> Any:
    """The publishing step for *client* (a redis-py ``Script``: ``EVALSHA``, loaded again on ``NOSCRIPT``)."""
    return client.register_script(_PUBLISH)


async def publish(script: Any, keys: Keys, change: Change) -> int:
    """Store and publish *change* under a new generation with *script* (:func:`publisher`); the generation."""
    text = encode(change._replace(generation=0)).decode()
    head, sep, tail = text.partition(_MARK)
    assert sep, "encode() writes the generation right after the version"
    return int(await script(keys=[keys.generation, keys.latest],
                            args=[head + '"generation":', "," + tail, change.plugin, keys.channel]))


class State(NamedTuple):
    generation: int             #: the stored counter (0: no change yet)
    latest: list[Change]        #: each plugin's latest change, by generation
    bad: list[str]              #: why stored entries were refused (a foreign writer's keys)


async def read_state(client: Any, keys: Keys) -> State:
    """The stored generation and every plugin's latest change (in generation order)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.get(keys.generation)
        pipe.hgetall(keys.latest)
        raw_generation, raw_latest = await pipe.execute()
    bad: list[str] = []
    try:
        generation = int(raw_generation or 0)
    except ValueError:
        bad.append(f"{keys.generation} holds no counter")
        generation = 0
    latest: list[Change] = []
    for field, value in (raw_latest or {}).items():
        try:
            latest.append(decode(value))
        except FleetMessageError as exc:
            bad.append(f"{keys.latest}: {exc}")
    latest.sort(key=lambda c: c.generation)
    return State(generation, latest, bad)
