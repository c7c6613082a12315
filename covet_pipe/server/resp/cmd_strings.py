"""String commands beyond GET/SET: counters, APPEND/STRLEN, GETSET/GETDEL/GETEX, SETNX/SETEX/PSETEX, MGET/MSET.

The read-modify-write ones call the engine's atomic operations (``incr_by``, ``append``, ``get_set``,
``get_del``, ``set_many``: the optional part of the StoragePlugin contract), so two clients' INCRs
never lose an update, whatever the engine.
"""

from __future__ import annotations

import time
from typing import Any

from covet_pipe.server.resp.codec import OK, encode_array, encode_bulk, encode_error, encode_int
from covet_pipe.storage.errors import NotANumberError
from covet_pipe.storage.numbers import LLONG_MAX, LLONG_MIN, parse_int

__all__ = ["STRING_COMMANDS"]

NOT_INT = b"-ERR value is not an integer or out of range\r\n"
SYNTAX = b"-ERR syntax error\r\n"


def _key(args: list[bytes], i: int = 1) -> str:
    return args[i].decode("latin-1")


def _bulk_or_null(conn: Any, value: bytes | None) -> bytes:
    if value is None:
        return b"_\r\n" if conn.proto == 3 else b"$-1\r\n"
    return encode_bulk(value)


def _number_error(exc: NotANumberError) -> bytes:
    return encode_error(f"ERR {exc}")


async def _incr(conn: Any, key: str, delta: int) -> bytes:
    try:
        return encode_int(await conn.storage().incr_by(key, delta))
    except NotANumberError as exc:
        return _number_error(exc)


async def cmd_incr(conn: Any, args: list[bytes]) -> bytes:
    return await _incr(conn, _key(args), 1)


async def cmd_decr(conn: Any, args: list[bytes]) -> bytes:
    return await _incr(conn, _key(args), -1)


async def cmd_incrby(conn: Any, args: list[bytes]) -> bytes:
    delta = parse_int(args[2])
    return NOT_INT if delta is None else await _incr(conn, _key(args), delta)


async def cmd_decrby(conn: Any, args: list[bytes]) -> bytes:
    delta = parse_int(args[2])
    if delta is None:
        return NOT_INT
    if delta == LLONG_MIN:
        return b"-ERR decrement would overflow\r\n"
    return await _incr(conn, _key(args), -delta)


async def cmd_incrbyfloat(conn: Any, args: list[bytes]) -> bytes:
    try:
        return encode_bulk(await conn.storage().incr_by_float(_key(args), args[2]))
    except NotANumberError as exc:
        return _number_error(exc)


async def cmd_append(conn: Any, args: list[bytes]) -> bytes:
    return encode_int(await conn.storage().append(_key(args), args[2]))


async def cmd_strlen(conn: Any, args: list[bytes]) -> bytes:
    value = await conn.storage().get(_key(args))
    return encode_int(0 if value is None else len(value))


async def cmd_getset(conn: Any, args: list[bytes]) -> bytes:
    return _bulk_or_null(conn, await conn.storage().get_set(_key(args), args[2]))


async def cmd_getdel(conn: Any, args: list[bytes]) -> bytes:
    return _bulk_or_null(conn, await conn.storage().get_del(_key(args)))


def expiry_ms(name: str, raw: bytes, scale: int, absolute: bool) -> int | bytes:
    """An EX/PX/EXAT/PXAT value as ms from now, or the error redis answers (NOT_INT, invalid expire time)."""
    value = parse_int(raw)
    if value is None:
        return NOT_INT
    now = int(time.time() * 1000)
    if value <= 0 or value > LLONG_MAX // scale or (not absolute and value * scale > LLONG_MAX - now):
        return encode_error(f"ERR invalid expire time in '{name}' command")
    return value * scale - now if absolute else value * scale


async def _set_with_ms(conn: Any, key: str, value: bytes, ms: int) -> None:
    store = conn.storage()
    if ms <= 0:                         # an absolute time in the past: set, and gone at once
        await store.delete(key)
    else:
        await store.set(key, value, ms / 1000)


async def cmd_setex(conn: Any, args: list[bytes]) -> bytes:
    ms = expiry_ms("setex", args[2], 1000, False)
    if isinstance(ms, bytes):
        return ms
    await _set_with_ms(conn, _key(args), args[3], ms)
    return OK


async def cmd_psetex(conn: Any, args: list[bytes]) -> bytes:
    ms = expiry_ms("psetex", args[2], 1, False)
    if isinstance(ms, bytes):
        return ms
    await _set_with_ms(conn, _key(args), args[3], ms)
    return OK


async def cmd_setnx(conn: Any, args: list[bytes]) -> bytes:
    stored = await conn.storage().set_many([(_key(args), args[2])], True)
    return encode_int(1 if stored else 0)


_GETEX = {b"EX": (1000, False), b"PX": (1, False), b"EXAT": (1000, True), b"PXAT": (1, True)}


async def cmd_getex(conn: Any, args: list[bytes]) -> bytes:
    """GETEX key [EX s | PX ms | EXAT t | PXAT t | PERSIST], parsed as redis does (one of them)."""
    option: bytes | None = None
    raw = b""
    i, n = 2, len(args)
    while i < n:
        opt = args[i].upper()
        if opt in _GETEX and i + 1 < n and option in (None, opt):
            option, raw = opt, args[i + 1]
            i += 2
        elif opt == b"PERSIST" and option in (None, opt):
            option = opt
            i += 1
        else:
            return SYNTAX
    px = pxat = None
    if option in _GETEX:
        scale, absolute = _GETEX[option]
        ms = expiry_ms("getex", raw, scale, absolute)
        if isinstance(ms, bytes):
            return ms
        if absolute:
            pxat = (parse_int(raw) or 0) * scale
        else:
            px = ms
    # one engine call (one Redis GETEX over RedisStorage)
    return _bulk_or_null(conn, await conn.storage().get_ex(_key(args), px=px, pxat=pxat,
                                                           persist=option == b"PERSIST"))


async def cmd_mget(conn: Any, args: list[bytes]) -> bytes:
    values = await conn.storage().get_many([k.decode("latin-1") for k in args[1:]])
    return encode_array([_bulk_or_null(conn, v) for v in values])


def _pairs(args: list[bytes]) -> list[tuple[str, bytes]] | None:
    if len(args) % 2 == 0:
        return None
    return [(args[i].decode("latin-1"), args[i + 1]) for i in range(1, len(args), 2)]


async def cmd_mset(conn: Any, args: list[bytes]) -> bytes:
    pairs = _pairs(args)
    if pairs is None:
        return b"-ERR wrong number of arguments for 'mset' command\r\n"
    await conn.storage().set_many(pairs)
    return OK


async def cmd_msetnx(conn: Any, args: list[bytes]) -> bytes:
    pairs = _pairs(args)
    if pairs is None:
        return b"-ERR wrong number of arguments for 'msetnx' command\r\n"
    return encode_int(1 if await conn.storage().set_many(pairs, True) else 0)


#: (name, arity, handler, key position, multi-key: every word after the name a key (True), or every other
#: word, the keys of key value pairs (2))
STRING_COMMANDS: list[tuple[str, int, Any, int, bool | int]] = [
    ("incr", 2, cmd_incr, 1, False),
    ("decr", 2, cmd_decr, 1, False),
    ("incrby", 3, cmd_incrby, 1, False),
    ("decrby", 3, cmd_decrby, 1, False),
    ("incrbyfloat", 3, cmd_incrbyfloat, 1, False),
    ("append", 3, cmd_append, 1, False),
    ("strlen", 2, cmd_strlen, 1, False),
    ("getset", 3, cmd_getset, 1, False),
    ("getdel", 2, cmd_getdel, 1, False),
    ("getex", -2, cmd_getex, 1, False),
    ("setex", 4, cmd_setex, 1, False),
    ("psetex", 4, cmd_psetex, 1, False),
    ("setnx", 3, cmd_setnx, 1, False),
    ("mget", -2, cmd_mget, 1, True),
    ("mset", -3, cmd_mset, 1, 2),
    ("msetnx", -3, cmd_msetnx, 1, 2),
]
