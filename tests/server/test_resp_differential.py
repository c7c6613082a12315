"""The same command sequences to a real redis-server and to our RESP protocol: equal replies.

Clients: redis-py (RESP2 and RESP3), redis-cli (a subprocess), raw sockets for malformed input,
and redis-benchmark. Differences by design are listed (and asserted) in DIFFERENCES below.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.server._resp_reader import ReplyReader
from tests.server._resp_fixtures import real_and_ours  # noqa: F401 (real_and_ours: a fixture)

#: where our replies differ from redis 7.0 on purpose: command -> (our reply as redis-py shows it, why);
#: test_differences_by_design asserts ours is this and redis's is not
DIFFERENCES = {
    ("SELECT", "1"): (("ResponseError", "DB index is out of range"),
                      "one keyspace, the storage engine's; redis has 16 databases"),
    ("LPUSH", "k", "v"): (("ResponseError", "unknown command 'LPUSH', with args beginning with: 'k' 'v' "),
                          "commands outside the supported set are unknown, whatever redis knows them as"),
    ("CLIENT", "SETINFO", "LIB-NAME", "x"): (("ok", b"OK"),
                                             "we answer CLIENT SETINFO as redis 7.2+ does; Debian's 7.0 does not"),
    ("CONFIG", "SET", "save", ""): (("ResponseError", "CONFIG SET is not supported: covet-pipe's RESP server "
                                     "has no settable configuration"), "nothing to configure at run time"),
}

TTL_SHORT_MS = 150
WAIT = 0.5


@pytest.fixture(scope="module")
def servers(real_and_ours: tuple[int, int]) -> tuple[int, int]:
    """(real redis port, our port) for the whole module; tests use their own keys."""
    return real_and_ours


def outcome(client: redis.Redis, *args: Any) -> Any:
    try:
        return ("ok", client.execute_command(*args))
    except redis.RedisError as exc:
        return (type(exc).__name__, str(exc))


def both(servers: tuple[int, int], protocol: int, commands: list[tuple], *, wait: dict | None = None) -> None:
    """Run *commands* on both servers with redis-py; every reply must be equal.

    redis-py retries an AuthenticationError (a ConnectionError) three times with backoff by default:
    3 s a refused AUTH on either server; the clients here answer each command once.
    """
    real_c = redis.Redis(port=servers[0], protocol=protocol, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    ours_c = redis.Redis(port=servers[1], protocol=protocol, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    try:
        for i, args in enumerate(commands):
            if wait and i in wait:
                time.sleep(wait[i])
            a, b = outcome(real_c, *args), outcome(ours_c, *args)
            assert b == a, f"{args!r}: redis {a!r}, ours {b!r}"
    finally:
        real_c.close()
        ours_c.close()


PROTOCOLS = pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])


@PROTOCOLS
def test_get_set_del_exists_sequence_equal_replies(servers, protocol):
    k = f"basic{protocol}"
    both(servers, protocol, [
        ("GET", k), ("SET", k, "v1"), ("GET", k), ("SET", k, "v2"), ("GET", k), ("EXISTS", k),
        ("EXISTS", k, k, k + "x"), ("DEL", k, k, k + "x"), ("GET", k), ("EXISTS", k), ("TTL", k),
        ("PING",), ("PING", "hi"), ("ECHO", "x y"), ("SELECT", "0"), ("SET", k, ""), ("GET", k),
        ("CONFIG", "GET", "save"), ("CONFIG", "GET", "appendonly"),
        ("CONFIG", "GET", "no-such-setting"), ("SELECT", "x"),
    ])


@pytest.mark.parametrize("version", ["2", "3"])
def test_hello_switches_protocol_like_redis(servers, version):
    replies = []
    for port in servers:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"HELLO %s\r\n" % version.encode())
            reader = ReplyReader()
            deadline = time.monotonic() + 5
            hello: Any = ...
            while hello is ... and time.monotonic() < deadline:
                reader.feed(s.recv(65536))
                hello = reader.get()
            if isinstance(hello, list):          # RESP2: a flat array of pairs
                hello = dict(zip(hello[::2], hello[1::2]))
            s.sendall(b"GET hello:none\r\n")   # the null: $-1 in RESP2, _ in RESP3
            null = s.recv(64)
            replies.append((hello[b"proto"], sorted(hello), null))
    assert replies[1] == replies[0]
    assert replies[0][0] == int(version)


@PROTOCOLS
def test_wrong_arity_equal_errors(servers, protocol):
    both(servers, protocol, [
        ("GET",), ("GET", "a", "b"), ("SET", "a"), ("DEL",), ("EXISTS",), ("EXPIRE", "a"),
        ("TTL",), ("TTL", "a", "b"), ("PTTL",), ("ECHO",), ("ECHO", "a", "b"), ("PING", "a", "b"),
        ("SELECT",), ("CLIENT",), ("CLIENT", "SETNAME"), ("CONFIG",), ("CONFIG", "GET"),
    ])


@PROTOCOLS
def test_unknown_commands_equal_errors(servers, protocol):
    both(servers, protocol, [
        ("NOSUCH",), ("NOSUCH", "a", "b"), ("nosuch", "x" * 200), ("FOO", "a" * 60, "b" * 60, "c" * 60),
        ("BAR", "with\x00nul"), ("CLIENT", "NOSUCH"), ("CONFIG", "NOSUCH"),
    ])


@PROTOCOLS
def test_binary_keys_and_values_equal_replies(servers, protocol):
    keys = [bytes([i, 0, 255 - i]) + b"\r\n \"'" for i in range(0, 256, 17)]
    commands: list[tuple] = []
    for i, key in enumerate(keys):
        commands += [("SET", key, bytes(range(256)) * i), ("GET", key), ("EXISTS", key)]
    commands += [("DEL", *keys), ("EXISTS", *keys), ("GET", b"\xff\xfe")]
    both(servers, protocol, commands)


@PROTOCOLS
def test_set_options_equal_replies(servers, protocol):
    k = f"opts{protocol}"
    both(servers, protocol, [
        ("SET", k, "1", "NX"), ("SET", k, "2", "NX"), ("GET", k), ("SET", k, "3", "XX"), ("GET", k),
        ("SET", k + "n", "1", "XX"), ("GET", k + "n"), ("SET", k, "4", "GET"), ("SET", k + "g", "1", "GET"),
        ("SET", k, "5", "NX", "GET"), ("SET", k, "v", "NX", "XX"), ("SET", k, "v", "EX"),
        ("SET", k, "v", "EX", "abc"), ("SET", k, "v", "EX", "0"), ("SET", k, "v", "PX", "-5"),
        ("SET", k, "v", "EX", "10", "PX", "10"), ("SET", k, "v", "BOGUS"), ("SET", k, "v", "ex", "100"),
        ("TTL", k), ("SET", k, "w", "KEEPTTL"), ("TTL", k), ("SET", k, "w"), ("TTL", k),
        ("SET", k, "v", "EX", "abc", "NX", "XX"), ("SET", k, "v", "EX", "99999999999999999999"),
    ])


@PROTOCOLS
def test_ttl_expiry_with_short_ex_equal_replies(servers, protocol):
    k = f"ttl{protocol}"
    both(servers, protocol, [
        ("SET", k, "v", "EX", "1"), ("TTL", k), ("SET", k + "p", "v", "PX", str(TTL_SHORT_MS)),
        ("GET", k + "p"), ("EXISTS", k + "p"),
        ("GET", k + "p"), ("TTL", k + "p"), ("EXISTS", k + "p"), ("DEL", k + "p"),
        ("SET", k, "v"), ("TTL", k), ("EXPIRE", k, "100"), ("TTL", k), ("EXPIRE", k + "none", "5"),
        ("EXPIRE", k, "50", "GT"), ("EXPIRE", k, "500", "GT"), ("TTL", k), ("EXPIRE", k, "900", "LT"),
        ("EXPIRE", k, "5", "LT"), ("TTL", k), ("EXPIRE", k, "5", "NX"), ("EXPIRE", k, "7", "XX"),
        ("TTL", k), ("EXPIRE", k, "5", "NX", "XX"), ("EXPIRE", k, "5", "GT", "LT"),
        ("EXPIRE", k, "5", "BOGUS"), ("EXPIRE", k, "x"), ("EXPIRE", k, "0"), ("GET", k), ("TTL", k),
        ("SET", k, "v"), ("EXPIRE", k, "-10"), ("EXISTS", k), ("PTTL", k + "none"),
    ], wait={5: WAIT})


@PROTOCOLS
def test_del_of_many_keys_and_exists_counting_duplicates(servers, protocol):
    keys = [f"many{protocol}:{i}" for i in range(60)]
    commands: list[tuple] = [("SET", k, str(i)) for i, k in enumerate(keys[::2])]
    commands += [("EXISTS", *keys, *keys[:10]), ("DEL", *keys, *keys[:5]), ("EXISTS", *keys), ("DEL", *keys)]
    both(servers, protocol, commands)


@PROTOCOLS
def test_pipelined_commands_equal_replies_in_order(servers, protocol):
    results = []
    for port in servers:
        c = redis.Redis(port=port, protocol=protocol, socket_timeout=10)
        pipe = c.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"pipe{protocol}:{i % 7}", i).get(f"pipe{protocol}:{i % 7}").exists(f"pipe{protocol}:{i}")
        pipe.execute_command("NOSUCH", "a")
        results.append(pipe.execute(raise_on_error=False))
        c.close()
    real, ours = results
    assert [repr(x) for x in ours] == [repr(x) for x in real]


def test_auth_and_hello_without_a_provider_equal_replies(servers):
    both(servers, 2, [
        ("AUTH", "pw"), ("AUTH", "default", "anything"), ("AUTH", "bob", "pw"), ("AUTH", "a", "b", "c"),
        ("HELLO", "4"), ("HELLO", "x"), ("HELLO", "2", "BOGUS"), ("HELLO", "2", "SETNAME", "a b"),
        ("CLIENT", "SETNAME", "bad name"), ("CLIENT", "SETNAME", "good"), ("CLIENT", "GETNAME"),
    ])


def test_differences_by_design(servers):
    """Our replies where redis's differ, each listed with its reason in DIFFERENCES."""
    real_c = redis.Redis(port=servers[0], protocol=2)
    ours_c = redis.Redis(port=servers[1], protocol=2)
    try:
        for args, (expected, why) in DIFFERENCES.items():
            assert outcome(ours_c, *args) == expected, why
            assert outcome(real_c, *args) != expected, f"{args}: no longer a difference ({why})"
    finally:
        real_c.close()
        ours_c.close()


CLI_COMMANDS = [
    ["SET", "cli:k", "v"], ["GET", "cli:k"], ["GET", "cli:none"], ["GET"], ["NOSUCH", "a"],
    ["EXISTS", "cli:k", "cli:k"], ["SET", "cli:t", "v", "EX", "100"], ["TTL", "cli:t"], ["TTL", "cli:none"],
    ["DEL", "cli:k", "cli:t", "cli:none"], ["PING"], ["ECHO", "hello world"], ["CONFIG", "GET", "save"],
    ["CONFIG", "GET", "appendonly"], ["SET", "cli:k", "v", "EX", "0"], ["EXPIRE", "cli:k", "x"],
]


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_redis_cli_prints_the_same_for_both(servers, resp3):
    for argv in CLI_COMMANDS:
        outs = []
        for port in servers:
            cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + (["-3"] if resp3 else []) + argv
            done = subprocess.run(cmd, capture_output=True, timeout=20)
            outs.append((done.returncode, done.stdout, done.stderr))
        assert outs[1] == outs[0], f"{argv}: redis {outs[0]!r}, ours {outs[1]!r}"


def raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send *data*, read until the server closes or stays quiet; (bytes, closed by server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.settimeout(0.5)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            if not chunk:
                return got, True
            got += chunk
        return got, False


@pytest.mark.parametrize("data", [
    b"*1\r\n$4\r\nPING\r\n*x\r\n",
    b"*2\r\n$3\r\nGET\r\n+k\r\n",
    b"*1\r\n$-5\r\n",
    b"*1\r\n$4\r\nPINGXX\r\n",
    b'PING\r\nSET "unbalanced\r\nPING\r\n',
    b"SET raw:k v\r\nGET raw:k\r\n  get   raw:k  \r\n\r\nECHO 'a b'\r\nECHO \"\\x41\"\r\nQUIT\r\nPING\r\n",
    b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n",
], ids=["bad-count", "not-bulk", "negative-bulk", "bulk-overrun", "unbalanced-quotes", "inline", "empty"])
def test_raw_protocol_replies_and_closes_like_redis(servers, data):
    real = raw_exchange(servers[0], data)
    ours = raw_exchange(servers[1], data)
    assert ours == real


def test_redis_benchmark_runs_against_ours(servers):
    done = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(servers[1]), "-t", "get,set",
                           "-q", "-n", "2000"], capture_output=True, timeout=120)
    out = done.stdout.decode()
    print(out)
    assert done.returncode == 0, done.stderr
    for name in ("SET", "GET"):
        line = [x for x in out.replace("\r", "\n").splitlines() if x.startswith(f"{name}: ")
                and "requests per second" in x]
        assert line, out
