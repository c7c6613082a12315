"""The Redis commands covet-pipe's RESP protocol serves, with redis's arities and error texts.

Each command is a :class:`Command`: its redis arity (positive: exactly that many words with the name;
negative: at least), where its key is (the Request's ``path``), and ``run(conn, args) -> bytes`` that
answers it, already RESP-encoded for ``conn.proto``. Data commands run against the connection's
StoragePlugin (``conn.storage()``); ``local`` commands (AUTH, HELLO, QUIT) carry the
connection's own credentials and protocol version, so they are answered by the connection without
the middleware chain.
"""

from __future__ import annotations

import fnmatch
import math
import time
from typing import Any, Callable, Coroutine, Protocol

from covet_pipe.server.resp.codec import (
    NULL2, NULL3, OK, PONG, encode_array, encode_bulk, encode_error, encode_int, encode_map,
)

__all__ = ["Command", "COMMANDS", "unknown_command", "wrong_arity", "is_command_name"]

class Session(Protocol):
    """What a command uses of its connection (``connection.RespConnection`` is one)."""

    id: int
    proto: int
    client_name: bytes | None
    lib_info: dict[str, bytes]

    def storage(self) -> Any: ...
    async def authenticate(self, user: bytes | None, password: bytes) -> bytes: ...
    def quit_after_reply(self) -> None: ...


#: a command's coroutine function: the connection and the command's words (the name first)
Run = Callable[[Session, list[bytes]], Coroutine[Any, Any, bytes]]

SYNTAX = b"-ERR syntax error\r\n"
NOT_INT = b"-ERR value is not an integer or out of range\r\n"
#: redis's limit for expire times in ms (LLONG_MAX), so overflow checks match its errors
_LLONG_MAX = 2 ** 63 - 1


class Command:
    """One command: name, arity, key position and how to run it."""

    __slots__ = ("name", "method", "arity", "key", "multi_key", "key_step", "local", "run")

    def __init__(self, name: str, arity: int, run: Run, *, key: int = 0, multi_key: bool | int = False,
                 local: bool = False) -> None:
        #: lower-case, as redis names it in errors
        self.name = name
        #: the Request's method
        self.method = name.upper()
        self.arity = arity
        #: index of the key in the command's words (the Request's path); 0 for none
        self.key = key
        #: every word after the name is a key (DEL, EXISTS; multi_key=True), or every other one (MSET's
        #: key value pairs; multi_key=2): the chain checks each one
        self.multi_key = bool(multi_key)
        self.key_step = int(multi_key) or 1
        self.local = local
        self.run = run

    def arity_ok(self, n: int) -> bool:
        return n == self.arity if self.arity > 0 else n >= -self.arity

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The keys of *args* the chain checks: each key of a multi-key command, else its key (b"" for none)."""
        if self.multi_key:
            return args[1::self.key_step]
        return [args[self.key] if self.key else b""]


def wrong_arity(name: str) -> bytes:
    return b"-ERR wrong number of arguments for '%s' command\r\n" % name.encode()


def unknown_command(args: list[bytes]) -> bytes:
    """redis's text: the name (128 bytes at most) and the first arguments, quoted, up to 128 bytes."""
    shown = b""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += b"'" + _cstr(a)[:128 - len(shown)] + b"' "
    return encode_error(b"ERR unknown command '%s', with args beginning with: %s"
                        % (_cstr(args[0])[:128], shown))


def _unknown_sub(container: str, sub: bytes) -> bytes:
    return encode_error(b"ERR unknown subcommand '%s'. Try %s HELP."
                        % (_cstr(sub)[:128], container.encode()))


def _cstr(b: bytes) -> bytes:
    # redis formats with %s: the text stops at the first NUL
    i = b.find(b"\0")
    return b if i < 0 else b[:i]


def _int(b: bytes) -> int | None:
    if b[:1] == b"-":
        return -int(b[1:]) if b[1:].isdigit() and len(b) < 21 else None
    return int(b) if b.isdigit() and len(b) < 20 else None


def _null(conn: Session) -> bytes:
    return NULL3 if conn.proto == 3 else NULL2


# -- keys and values --------------------------------------------------------------------------

async def cmd_get(conn: Session, args: list[bytes]) -> bytes:
    value = await conn.storage().get(args[1].decode("latin-1"))
    return _null(conn) if value is None else b"$%d\r\n%s\r\n" % (len(value), value)


async def cmd_set(conn: Session, args: list[bytes]) -> bytes:
    nx = xx = get = keepttl = False
    expiry: bytes | None = None
    raw = b""                           # the expiry's value, read once expiry is set
    i, n = 3, len(args)
    while i < n:                        # options first, as redis parses them; values checked after
        opt = args[i].upper()
        # the same expiry option again is taken (the last one counts), as redis does; another is not
        if opt in (b"EX", b"PX", b"EXAT", b"PXAT") and i + 1 < n and expiry in (None, opt) and not keepttl:
            expiry, raw = opt, args[i + 1]
            i += 2
            continue
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and expiry is None:
            keepttl = True
        else:
            return SYNTAX
        i += 1
    px = pxat = None
    if expiry is not None:
        value = _int(raw)
        if value is None:
            return NOT_INT
        scale = 1000 if expiry in (b"EX", b"EXAT") else 1
        relative = expiry in (b"EX", b"PX")         # redis adds now (ms): that sum must fit too
        if value <= 0 or value > _LLONG_MAX // scale or \
                (relative and value * scale > _LLONG_MAX - int(time.time() * 1000)):
            return b"-ERR invalid expire time in 'set' command\r\n"
        if relative:
            px = value * scale
        else:
            pxat = value * scale
    store = conn.storage()
    key = args[1].decode("latin-1")
    if not (nx or xx or get or keepttl or pxat is not None):
        await store.set(key, args[2], None if px is None else px / 1000)
        return OK
    # one engine call, atomic in the engine (one Redis SET with the same flags over RedisStorage)
    stored, old = await store.set_with(key, args[2], px=px, pxat=pxat, keep_ttl=keepttl, only_new=nx,
                                       only_existing=xx, get=get)
    if get:
        return _bulk_or_null(conn, old)
    return OK if stored else _null(conn)


def _bulk_or_null(conn: Session, value: bytes | None) -> bytes:
    return _null(conn) if value is None else encode_bulk(value)


async def cmd_del(conn: Session, args: list[bytes]) -> bytes:
    store = conn.storage()
    if len(args) == 2:
        return encode_int(1 if await store.delete(args[1].decode("latin-1")) else 0)
    return encode_int(await store.delete_many([k.decode("latin-1") for k in args[1:]]))


async def cmd_exists(conn: Session, args: list[bytes]) -> bytes:
    store = conn.storage()
    if len(args) == 2:
        return encode_int(1 if await store.exists(args[1].decode("latin-1")) else 0)
    # a key named twice counts twice, as in redis
    return encode_int(await store.exists_many([k.decode("latin-1") for k in args[1:]]))


async def cmd_ttl(conn: Session, args: list[bytes]) -> bytes:
    return _ttl_reply(await conn.storage().ttl(args[1].decode("latin-1")), 1000)


async def cmd_pttl(conn: Session, args: list[bytes]) -> bytes:
    return _ttl_reply(await conn.storage().ttl(args[1].decode("latin-1")), 1)


def _ttl_reply(left: float | None, unit_ms: int) -> bytes:
    if left is None:
        return encode_int(-2)
    if left == math.inf:
        return encode_int(-1)
    ms = min(max(0, int(left * 1000)), _LLONG_MAX)     # clamped to the 64-bit range
    # redis: TTL rounds to the nearest second ((ms + 500) / 1000), PTTL is exact
    return encode_int((ms + 500) // 1000 if unit_ms == 1000 else ms)


# -- server and connection ----------------------------------------------------------------------

async def cmd_ping(conn: Session, args: list[bytes]) -> bytes:
    if len(args) > 2:
        return wrong_arity("ping")
    return PONG if len(args) == 1 else encode_bulk(args[1])


async def cmd_echo(conn: Session, args: list[bytes]) -> bytes:
    return encode_bulk(args[1])


async def cmd_select(conn: Session, args: list[bytes]) -> bytes:
    index = _int(args[1])
    if index is None:
        return NOT_INT
    # one keyspace: the storage engine's
    return OK if index == 0 else b"-ERR DB index is out of range\r\n"


_NAME_CHARS = frozenset(range(33, 127))


async def cmd_client(conn: Session, args: list[bytes]) -> bytes:
    sub = args[1].upper()
    n = len(args)
    if sub == b"SETNAME":
        if n != 3:
            return wrong_arity("client|setname")
        if any(c not in _NAME_CHARS for c in args[2]):
            return b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
        conn.client_name = args[2] or None
        return OK
    if sub == b"GETNAME":
        if n != 2:
            return wrong_arity("client|getname")
        return _bulk_or_null(conn, conn.client_name)
    if sub == b"SETINFO":
        if n != 4:
            return wrong_arity("client|setinfo")
        attr = args[2].upper()
        if attr not in (b"LIB-NAME", b"LIB-VER"):
            return encode_error(b"ERR Unrecognized option '%s'" % _cstr(args[2]))
        if any(c not in _NAME_CHARS for c in args[3]):
            return encode_error(b"ERR %s cannot contain spaces, newlines or special characters."
                                % attr.lower())
        conn.lib_info[attr.lower().decode()] = args[3]
        return OK
    if sub == b"ID":
        if n != 2:
            return wrong_arity("client|id")
        return encode_int(conn.id)
    return _unknown_sub("CLIENT", args[1])


async def cmd_command(conn: Session, args: list[bytes]) -> bytes:
    if len(args) == 1:
        return b"*0\r\n"
    sub = args[1].upper()
    if sub == b"DOCS":
        return encode_map([], conn.proto)
    if sub == b"COUNT":
        return encode_int(len(COMMANDS))
    if sub == b"LIST":
        return encode_array([encode_bulk(c.name) for c in COMMANDS.values()])
    if sub == b"INFO":
        return b"*0\r\n"
    return _unknown_sub("COMMAND", args[1])


#: what CONFIG GET shows (redis-benchmark asks for "save" and "appendonly")
CONFIG = {"save": b"", "appendonly": b"no", "databases": b"1"}


async def cmd_config(conn: Session, args: list[bytes]) -> bytes:
    sub = args[1].upper()
    if sub == b"GET":
        if len(args) < 3:
            return wrong_arity("config|get")
        found: dict[str, bytes] = {}
        for pattern in args[2:]:
            p = pattern.decode("latin-1").lower()
            for name, value in CONFIG.items():
                if fnmatch.fnmatchcase(name, p):
                    found[name] = value
        return encode_map([(encode_bulk(k), encode_bulk(v)) for k, v in found.items()], conn.proto)
    if sub in (b"SET", b"RESETSTAT", b"REWRITE"):
        return b"-ERR CONFIG %s is not supported: covet-pipe's RESP server has no settable " \
               b"configuration\r\n" % sub
    return _unknown_sub("CONFIG", args[1])


async def cmd_auth(conn: Session, args: list[bytes]) -> bytes:
    if len(args) > 3:
        return SYNTAX
    if len(args) == 2:
        return await conn.authenticate(None, args[1])
    return await conn.authenticate(args[1], args[2])


async def cmd_hello(conn: Session, args: list[bytes]) -> bytes:
    """HELLO [protover [AUTH user pass] [SETNAME name]]: switch RESP version, as redis checks it."""
    proto = conn.proto
    if len(args) >= 2:
        ver = _int(args[1])
        if ver is None:
            return b"-ERR Protocol version is not an integer or out of range\r\n"
        if ver < 2 or ver > 3:
            return b"-NOPROTO unsupported protocol version\r\n"
        proto = ver
    name = auth = None
    i = 2
    while i < len(args):
        opt = args[i].upper()
        more = len(args) - 1 - i
        if opt == b"AUTH" and more >= 2:
            auth = (args[i + 1], args[i + 2])
            i += 3
        elif opt == b"SETNAME" and more:
            name = args[i + 1]
            if any(c not in _NAME_CHARS for c in name):
                return b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
            i += 2
        else:
            return encode_error(b"ERR Syntax error in HELLO option '%s'" % _cstr(args[i]))
    if auth is not None:
        reply = await conn.authenticate(*auth)
        if reply != OK:
            return reply
    if name is not None:
        conn.client_name = name or None
    conn.proto = proto
    from covet_pipe import __version__
    return encode_map([
        (encode_bulk(b"server"), encode_bulk(b"covet-pipe")),
        (encode_bulk(b"version"), encode_bulk(__version__)),
        (encode_bulk(b"proto"), encode_int(proto)),
        (encode_bulk(b"id"), encode_int(conn.id)),
        (encode_bulk(b"mode"), encode_bulk(b"standalone")),
        (encode_bulk(b"role"), encode_bulk(b"master")),
        (encode_bulk(b"modules"), b"*0\r\n"),
    ], proto)


async def cmd_quit(conn: Session, args: list[bytes]) -> bytes:
    conn.quit_after_reply()
    return OK


COMMANDS: dict[bytes, Command] = {c.name.encode(): c for c in (
    Command("get", 2, cmd_get, key=1),
    Command("set", -3, cmd_set, key=1),
    Command("del", -2, cmd_del, key=1, multi_key=True),
    Command("exists", -2, cmd_exists, key=1, multi_key=True),
    Command("ttl", 2, cmd_ttl, key=1),
    Command("pttl", 2, cmd_pttl, key=1),
    Command("ping", -1, cmd_ping),
    Command("echo", 2, cmd_echo),
    Command("select", 2, cmd_select),
    Command("client", -2, cmd_client),
    Command("command", -1, cmd_command),
    Command("config", -2, cmd_config),
    Command("auth", -2, cmd_auth, local=True),
    Command("hello", -1, cmd_hello, local=True),
    Command("quit", -1, cmd_quit, local=True),
)}

# the commands of their own modules (imported here: they use this module's Command table)
from covet_pipe.server.resp.cmd_keys import KEY_COMMANDS  # noqa: E402
from covet_pipe.server.resp.cmd_server import SERVER_COMMANDS  # noqa: E402
from covet_pipe.server.resp.cmd_strings import STRING_COMMANDS  # noqa: E402

for _name, _arity, _run, _key, _multi in STRING_COMMANDS + KEY_COMMANDS + SERVER_COMMANDS:
    COMMANDS[_name.encode()] = Command(_name, _arity, _run, key=_key, multi_key=_multi)

_LONGEST = max(len(k) for k in COMMANDS)


def is_command_name(word: bytes, complete: bool) -> str:
    """``"match"``/``"no"`` for a whole first word; for a partial one, ``"need_more"`` while it may
    still become a command name."""
    w = word.lower()
    if complete:
        return "match" if w in COMMANDS else "no"
    if len(w) <= _LONGEST and any(k.startswith(w) for k in COMMANDS):
        return "need_more"
    return "no"
