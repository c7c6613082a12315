"""The compiled RESP parser against the pure-Python reference (tests/server/_resp_reference.py): random
valid and malformed streams, fed whole and in random splits, give the same commands, the same protocol
error (the clear, redis-worded one the connection answers) and the same bytes held back."""

from __future__ import annotations

import random

import pytest

from covet_pipe.server.resp.codec import CommandParser
from tests.server._resp_reference import ReferenceParser

#: the bytes a malformed frame is made of: RESP's markers, digits, signs, quotes, escapes, spaces
ALPHABET = b"*$\r\n0123456789-+:!abcx \"'\\\t\0\xff"


def frame(rng: random.Random) -> bytes:
    """A valid command, an inline one, or a broken one (a wrong marker, length, count or quote)."""
    words = [bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 3, 20))))
             for _ in range(rng.randrange(1, 4))]
    good = b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 30)))
    if kind == 1:                                   # an inline command, quotes and escapes included
        return b" ".join(rng.choice((b"GET", b"'a b'", b'"x\\x41\\n"', b'"open', b"k", b"''")) for _ in
                         range(rng.randrange(1, 4))) + rng.choice((b"\r\n", b"\n"))
    if kind == 2:                                   # one byte of a valid frame replaced
        i = rng.randrange(len(good))
        return good[:i] + bytes([rng.choice(ALPHABET)]) + good[i + 1:]
    if kind == 3:                                   # a count or a length out of bounds or signed
        return rng.choice((b"*99999999999999999999\r\n", b"*-5\r\n", b"*0\r\n", b"*1\r\n$-1\r\n",
                           b"*1\r\n$9999999999999999999\r\n", b"*1\r\n$65\r\n", b"*9\r\n",
                           b"*1\r\n$\r\n", b"*\r\n", b"*-\r\n", b"*1\r\n$3\r\nabcde"))
    return good


def run(parser, chunks):
    out = []
    for c in chunks:
        out += parser.feed(c)
    return out, parser.error, parser.buffered


@pytest.mark.parametrize("seed", range(40))
def test_compiled_parser_matches_the_reference_on_random_streams(seed):
    rng = random.Random(seed)
    for _ in range(25):
        stream = b"".join(frame(rng) for _ in range(rng.randrange(1, 8)))
        chunks, pos = [], 0
        while pos < len(stream):                      # bounded: each chunk takes at least one byte
            step = rng.choice((1, 2, 5, 17, len(stream)))
            chunks.append(stream[pos:pos + step])
            pos += step
        limits = rng.choice(({}, {"max_bulk": 16, "max_array": 4, "max_inline": 24}))
        want = run(ReferenceParser(**limits), chunks)
        got = run(CommandParser(**limits), chunks)
        assert got == want, (stream, chunks, limits)
        assert got[1] is None or got[1].startswith("Protocol error: ")


def test_compiled_parser_takes_bytearray_and_memoryview_like_the_reference():
    data = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    for kind in (bytearray, memoryview):
        assert CommandParser().feed(kind(data)) == ReferenceParser().feed(bytes(data)) == [[b"GET", b"k"]]
