"""RESP2/RESP3 wire format: an incremental, bounded command parser and the encoders.

The server side needs two things: :class:`CommandParser` turns a client's bytes into commands (arrays of
bulk strings, or telnet-style inline lines), and the ``encode_*`` functions build replies for the
connection's protocol version (2 or 3; RESP3 only differs where a reply is a null, a map, a boolean or a
double; tests/server/_resp_reader.py reads replies for the tests).

Malformed or oversized input raises :class:`RespProtocolError` with redis's own wording
(``Protocol error: invalid bulk length`` ...); the connection answers ``-ERR <message>`` and closes,
as redis does.

The parser and the encoders are compiled (``_resp.pyx``: C pointers and ``memchr`` over the
client's bytes, one ``bytes`` object per argument); this module is their public front.
"""

from __future__ import annotations

from covet_pipe.server.resp._resp import (
    MAX_ARRAY as MAX_ARRAY,
    MAX_BULK as MAX_BULK,
    MAX_INLINE as MAX_INLINE,
    NULL2 as NULL2,
    NULL3 as NULL3,
    OK as OK,
    PONG as PONG,
    CommandParser as CommandParser,
    RespError as RespError,
    RespProtocolError as RespProtocolError,
    encode as encode,
    encode_array as encode_array,
    encode_bool as encode_bool,
    encode_bulk as encode_bulk,
    encode_double as encode_double,
    encode_error as encode_error,
    encode_int as encode_int,
    encode_map as encode_map,
    encode_null as encode_null,
    encode_simple as encode_simple,
    split_inline as split_inline,
)

__all__ = [
    "CommandParser", "RespProtocolError", "RespError",
    "encode", "encode_simple", "encode_error", "encode_int", "encode_bulk", "encode_null",
    "encode_array", "encode_map", "encode_bool", "encode_double", "split_inline",
    "OK", "PONG", "NULL2", "NULL3",
]
