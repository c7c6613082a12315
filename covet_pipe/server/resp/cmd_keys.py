"""Key commands: the EXPIRE family, PERSIST, EXPIRETIME, TYPE, KEYS, SCAN, DBSIZE, FLUSHDB/FLUSHALL.

Expire times are checked as redis checks them (options first, then the number, then overflow:
``ERR invalid expire time in '<command>' command``); TTL-like replies are clamped to 64 bits.
FLUSHDB and FLUSHALL are refused unless the operator starts RespProtocol with ``allow_flush=True``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from covet_pipe.server.resp.codec import OK, encode_array, encode_bulk, encode_error, encode_int
from covet_pipe.storage.numbers import LLONG_MAX, LLONG_MIN, parse_int

__all__ = ["KEY_COMMANDS", "clamp"]

NOT_INT = b"-ERR value is not an integer or out of range\r\n"
SYNTAX = b"-ERR syntax error\r\n"


def clamp(value: int) -> int:
    """*value* within the signed 64-bit range (what a redis integer reply can hold)."""
    return max(LLONG_MIN, min(LLONG_MAX, value))


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _expire(conn: Any, args: list[bytes], name: str, scale: int, absolute: bool) -> bytes:
    flags = {a.upper() for a in args[3:]}
    for a in args[3:]:
        if a.upper() not in (b"NX", b"XX", b"GT", b"LT"):
            return encode_error(b"ERR Unsupported option " + a.split(b"\0", 1)[0])
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        return b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    if b"GT" in flags and b"LT" in flags:
        return b"-ERR GT and LT options at the same time are not compatible\r\n"
    when = parse_int(args[2])
    if when is None:
        return NOT_INT
    invalid = encode_error(f"ERR invalid expire time in '{name}' command")
    if scale == 1000 and (when > LLONG_MAX // 1000 or when < LLONG_MIN // 1000 + 1):
        return invalid
    when *= scale
    now = _now_ms()
    base = 0 if absolute else now
    if when > LLONG_MAX - base:
        return invalid
    store = conn.storage()
    key = args[1].decode("latin-1")
    # one engine call (PEXPIRE / PEXPIREAT with the same flags over RedisStorage)
    options = frozenset(f.decode() for f in flags)
    try:
        if absolute:
            found = await store.expire_with(key, pxat=when, flags=options)
        else:
            found = await store.expire_with(key, px=when, flags=options)
    except ValueError:                  # longer than the engine keeps
        return invalid
    return encode_int(1 if found else 0)


async def cmd_expire(conn: Any, args: list[bytes]) -> bytes:
    return await _expire(conn, args, "expire", 1000, False)


async def cmd_pexpire(conn: Any, args: list[bytes]) -> bytes:
    return await _expire(conn, args, "pexpire", 1, False)


async def cmd_expireat(conn: Any, args: list[bytes]) -> bytes:
    return await _expire(conn, args, "expireat", 1000, True)


async def cmd_pexpireat(conn: Any, args: list[bytes]) -> bytes:
    return await _expire(conn, args, "pexpireat", 1, True)


async def cmd_persist(conn: Any, args: list[bytes]) -> bytes:
    return encode_int(1 if await conn.storage().persist(args[1].decode("latin-1")) else 0)


async def _expiretime(conn: Any, args: list[bytes], unit_ms: int) -> bytes:
    at = await conn.storage().expire_time(args[1].decode("latin-1"))
    if at is None:
        return encode_int(-2)
    if at == math.inf:
        return encode_int(-1)
    ms = int(at)                        # RedisStorage: Redis's own; the default: from the TTL, within a ms
    return encode_int(clamp((ms + 500) // 1000 if unit_ms == 1000 else ms))


async def cmd_expiretime(conn: Any, args: list[bytes]) -> bytes:
    return await _expiretime(conn, args, 1000)


async def cmd_pexpiretime(conn: Any, args: list[bytes]) -> bytes:
    return await _expiretime(conn, args, 1)


async def cmd_type(conn: Any, args: list[bytes]) -> bytes:
    return b"+%s\r\n" % (await conn.storage().key_type(args[1].decode("latin-1"))).encode()


def _names(keys: list[str]) -> bytes:
    return encode_array([encode_bulk(k.encode("latin-1", "replace")) for k in keys])


async def cmd_keys(conn: Any, args: list[bytes]) -> bytes:
    return _names(await conn.storage().keys(args[1].decode("latin-1")))


async def cmd_scan(conn: Any, args: list[bytes]) -> bytes:
    """SCAN cursor [MATCH p] [COUNT n] [TYPE t]: the engine's paging (Redis's own over RedisStorage)."""
    cursor = args[1]
    if not cursor.isdigit() or int(cursor) > 2 ** 64 - 1:
        return b"-ERR invalid cursor\r\n"
    pattern, kind, count = "*", None, 10
    i, n = 2, len(args)
    while i < n:
        opt = args[i].upper()
        if i + 1 >= n:
            return SYNTAX
        if opt == b"MATCH":
            pattern = args[i + 1].decode("latin-1")
        elif opt == b"COUNT":
            number = parse_int(args[i + 1])
            if number is None:
                return NOT_INT
            if number < 1:
                return SYNTAX
            count = number
        elif opt == b"TYPE":
            kind = args[i + 1].decode("latin-1").lower()
        else:
            return SYNTAX
        i += 2
    after, keys = await conn.storage().scan(int(cursor), pattern, count, kind)
    return b"*2\r\n" + encode_bulk(b"%d" % after) + _names(keys)


async def cmd_dbsize(conn: Any, args: list[bytes]) -> bytes:
    return encode_int((await conn.storage().key_count())[0])


async def _flush(conn: Any, args: list[bytes], name: str) -> bytes:
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        return SYNTAX
    if not getattr(conn.plugin, "allow_flush", False):
        return encode_error(f"ERR {name.upper()} is disabled on this server: start RespProtocol with "
                            "allow_flush=True to let clients remove every key")
    await conn.storage().flush()
    return OK


async def cmd_flushdb(conn: Any, args: list[bytes]) -> bytes:
    return await _flush(conn, args, "flushdb")


async def cmd_flushall(conn: Any, args: list[bytes]) -> bytes:
    return await _flush(conn, args, "flushall")


#: (name, arity, handler, key position, every word after the name a key)
KEY_COMMANDS: list[tuple[str, int, Any, int, bool]] = [
    ("expire", -3, cmd_expire, 1, False),
    ("pexpire", -3, cmd_pexpire, 1, False),
    ("expireat", -3, cmd_expireat, 1, False),
    ("pexpireat", -3, cmd_pexpireat, 1, False),
    ("persist", 2, cmd_persist, 1, False),
    ("expiretime", 2, cmd_expiretime, 1, False),
    ("pexpiretime", 2, cmd_pexpiretime, 1, False),
    ("type", 2, cmd_type, 1, False),
    ("keys", 2, cmd_keys, 0, False),
    ("scan", -2, cmd_scan, 0, False),
    ("dbsize", 1, cmd_dbsize, 0, False),
    ("flushdb", -1, cmd_flushdb, 0, False),
    ("flushall", -1, cmd_flushall, 0, False),
]
