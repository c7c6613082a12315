"""The RESP codec: command parsing (whole, split anywhere, malformed, oversized), inline splitting,
the encoders for RESP2 and RESP3, and the reply reader."""

from __future__ import annotations

import math
import random

import pytest

from covet_pipe.server.resp.codec import (
    CommandParser, encode, encode_bool, encode_bulk, encode_double, encode_error, encode_map, encode_null,
    split_inline,
)
from tests.server._resp_reader import ReplyReader, RespError


def cmd(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


def test_parse_one_array_command_returns_its_words():
    assert CommandParser().feed(cmd(b"SET", b"k", b"v")) == [[b"SET", b"k", b"v"]]


def test_parse_pipelined_commands_returns_them_in_order():
    data = cmd(b"GET", b"a") + cmd(b"PING") + cmd(b"DEL", b"a", b"b")
    assert CommandParser().feed(data) == [[b"GET", b"a"], [b"PING"], [b"DEL", b"a", b"b"]]


def test_parse_binary_argument_keeps_every_byte():
    blob = bytes(range(256)) + b"\r\n$3\r\n*1\r\n"
    assert CommandParser().feed(cmd(b"SET", blob, b"")) == [[b"SET", blob, b""]]


@pytest.mark.parametrize("seed", range(20))
def test_parse_random_splits_of_a_valid_stream_give_the_same_commands(seed):
    rng = random.Random(seed)
    commands = []
    for _ in range(30):
        words = [bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 5, 40, 300))))
                 for _ in range(rng.randrange(1, 6))]
        commands.append(words)
    stream = b"".join(cmd(*c) for c in commands)
    parser = CommandParser()
    got = []
    pos = 0
    while pos < len(stream):                  # bounded: every step consumes at least one byte
        step = rng.randrange(1, 64)
        got += parser.feed(stream[pos:pos + step])
        pos += step
    assert got == commands
    assert parser.error is None and parser.buffered == 0


def test_parse_large_value_in_small_reads_holds_it_until_complete():
    value = b"x" * 200_000
    data = cmd(b"SET", b"k", value)
    parser = CommandParser()
    out = []
    for i in range(0, len(data), 1000):
        out += parser.feed(data[i:i + 1000])
        if i + 1000 < len(data):
            assert out == []
    assert out == [[b"SET", b"k", value]]


def test_parse_inline_commands_split_on_whitespace_and_skip_empty_lines():
    assert CommandParser().feed(b"PING\r\n\r\nset  k   v\nGET k\r\n") == [
        [b"PING"], [b"set", b"k", b"v"], [b"GET", b"k"]]


def test_split_inline_handles_quotes_and_escapes_like_redis():
    assert split_inline(b'SET "a b" \'c d\' "\\x41\\n\\"" \'it\\\'s\'') == [
        b"SET", b"a b", b"c d", b'A\n"', b"it's"]


@pytest.mark.parametrize("line", [b'SET "abc', b"SET 'abc", b'SET "a"b'])
def test_split_inline_unbalanced_quotes_is_none(line):
    assert split_inline(line) is None


@pytest.mark.parametrize("data, message", [
    (b"*x\r\n", "Protocol error: invalid multibulk length"),
    (b"* 1\r\n", "Protocol error: invalid multibulk length"),
    (b"*1\r\n+GET\r\n", "Protocol error: expected '$', got '+'"),
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$abc\r\n", "Protocol error: invalid bulk length"),
    (b'GET "k\r\n', "Protocol error: unbalanced quotes in request"),
])
def test_parse_malformed_input_sets_redis_error(data, message):
    parser = CommandParser()
    assert parser.feed(data) == []
    assert parser.error == message


def test_parse_skips_two_bytes_after_bulk_data_unchecked_as_redis_does():
    # redis takes $3 bytes, skips two (meant to be CRLF), and reads "\n" as an empty inline line
    assert CommandParser().feed(b"*1\r\n$3\r\nGETX\r\n") == [[b"GET"]]


def test_parse_returns_commands_before_a_malformed_one_then_stops():
    parser = CommandParser()
    out = parser.feed(cmd(b"PING") + b"*1\r\n!x\r\n" + cmd(b"PING"))
    assert out == [[b"PING"]]
    assert parser.error == "Protocol error: expected '$', got '!'"
    assert parser.feed(cmd(b"PING")) == []


def test_parse_bounds_bulk_array_and_inline_sizes():
    p = CommandParser(max_bulk=10, max_array=3, max_inline=32)
    assert p.feed(b"*1\r\n$11\r\n") == [] and p.error == "Protocol error: invalid bulk length"
    p = CommandParser(max_bulk=10, max_array=3, max_inline=32)
    assert p.feed(b"*4\r\n") == [] and p.error == "Protocol error: invalid multibulk length"
    p = CommandParser(max_bulk=10, max_array=3, max_inline=32)
    assert p.feed(b"GET " + b"k" * 40) == [] and p.error == "Protocol error: too big inline request"
    p = CommandParser(max_bulk=10, max_array=3, max_inline=32)
    assert p.feed(b"*" + b"1" * 40) == [] and p.error == "Protocol error: too big mbulk count string"


def test_parse_empty_and_negative_multibulk_is_ignored():
    assert CommandParser().feed(b"*0\r\n*-1\r\n" + cmd(b"PING")) == [[b"PING"]]


def test_parse_garbage_fuzz_never_raises_and_stays_bounded():
    rng = random.Random(7)
    alphabet = b"*$\r\n0123456789-+abc \"'"
    for _ in range(300):
        parser = CommandParser(max_bulk=64, max_array=8, max_inline=64)
        for _ in range(10):
            out = parser.feed(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))))
            assert all(w and all(isinstance(a, bytes) and len(a) <= 64 for a in w) for w in out)
            assert len(w) <= 8 if (w := out[-1] if out else []) else True
        assert parser.error is None or parser.error.startswith("Protocol error: ")
        # what is held back is bounded by the limits (a header line, or one argument)
        assert parser.buffered <= 64 + 2 + 40 + 64


def test_encode_resp2_and_resp3_differ_only_where_redis_does():
    assert encode_null(2) == b"$-1\r\n" and encode_null(3) == b"_\r\n"
    assert encode_bool(True, 2) == b":1\r\n" and encode_bool(False, 3) == b"#f\r\n"
    assert encode_double(1.5, 2) == b"$3\r\n1.5\r\n" and encode_double(1.5, 3) == b",1.5\r\n"
    assert encode_double(math.inf, 3) == b",inf\r\n" and encode_double(2.0, 3) == b",2\r\n"
    pairs = [(encode_bulk(b"a"), b":1\r\n")]
    assert encode_map(pairs, 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode_map(pairs, 3) == b"%1\r\n$1\r\na\r\n:1\r\n"


def test_encode_error_line_cannot_break_the_stream():
    assert encode_error("ERR a\r\nb") == b"-ERR a  b\r\n"


@pytest.mark.parametrize("proto", [2, 3])
def test_encode_then_read_round_trips(proto):
    value = [b"x", 7, None, [b"", -3], {b"k": b"v"}, "text"]
    reader = ReplyReader()
    data = encode(value, proto)
    for i in range(len(data)):                # byte by byte: incomplete until the last one
        reader.feed(data[i:i + 1])
        got = reader.get()
        if i < len(data) - 1:
            assert got is ...
    expected_map = {b"k": b"v"} if proto == 3 else [b"k", b"v"]
    assert got == [b"x", 7, None, [b"", -3], expected_map, b"text"]


def test_reader_reads_resp3_types_and_errors():
    reader = ReplyReader()
    reader.feed(b"#t\r\n,3.25\r\n(12345678901234567890\r\n~2\r\n:1\r\n:2\r\n-ERR bad\r\n!5\r\nNOPE!\r\n")
    assert reader.get() is True
    assert reader.get() == 3.25
    assert reader.get() == 12345678901234567890
    assert reader.get() == {1, 2}
    err = reader.get()
    assert isinstance(err, RespError) and str(err) == "ERR bad"
    assert str(reader.get()) == "NOPE!"
    assert reader.get() is ...
