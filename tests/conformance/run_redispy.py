"""``make resp-conformance``: redis-py's own string/key command and connection tests, against our RESP port.

The tests are those of the redis-py installed here: ``pip download`` fetches that version's sdist into
``build/`` (once), its ``tests/`` are unpacked beside it (the installed redis-py is the one tested).
The same selection runs against a real redis-server and against our RespProtocol over MemoryStorage
(``allow_flush=True``: the suite empties the database after each test), in RESP2 and RESP3.

The run passes when every test that passes on redis-server passes on ours, except those in
``DOES_NOT_APPLY`` (each with its reason); a listed test that passes, or any other failure, fails the
run. ``python tests/conformance/run_redispy.py [--engine=redis] [pytest args]``: with ``--engine=redis``
our port runs over RedisStorage (key prefix ``c:``) on a second redis-server instead.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from covet_pipe.builtin import RedisStorage, RespProtocol  # noqa: E402
from tests._redis import RealRedis  # noqa: E402
from tests.conformance._sdist import BUILD, outcomes, report, sdist_tests  # noqa: E402
from tests.server._resp_fixtures import start_ours  # noqa: E402

#: test_commands.py's tests of the string and key families, and what every client calls
SELECTION = " or ".join([
    "test_append", "test_strlen", "test_incr", "test_decr", "test_get", "test_set", "test_mget", "test_mset",
    "test_msetnx", "test_getset", "test_getdel", "test_getex", "test_setex", "test_psetex", "test_setnx",
    "test_expire", "test_pexpire", "test_persist", "test_ttl", "test_pttl", "test_type", "test_keys",
    "test_scan", "test_dbsize", "test_flush", "test_exists", "test_delete", "test_time", "test_info",
    "test_ping", "test_echo", "test_binary", "test_client_setname", "test_client_getname", "test_client_id",
    "test_dict_", "test_empty_key", "test_watch", "test_multi", "test_transaction", "test_pipeline",
    "test_connection",                  # the module: every test of tests/test_connection.py
])
FILES = ["tests/test_commands.py", "tests/test_connection.py"]

#: tests that pass on redis-server and fail on ours, and why (filled from a run; docs/protocols.md)
_NOT_STRINGS = "uses lists, sets or hashes: values are strings only (docs/protocols.md)"
_NOT_SERVED = "a string command outside the served set (GETBIT/SETBIT, GETRANGE/SETRANGE)"
DOES_NOT_APPLY: dict[str, str] = {
    "tests.test_commands.TestBinarySave::test_binary_lists": _NOT_STRINGS,
    "tests.test_commands.TestRedisCommands::test_scan_type": _NOT_STRINGS,
    "tests.test_commands.TestRedisCommands::test_type": _NOT_STRINGS,
    "tests.test_commands.TestRedisCommands::test_get_set_bit": _NOT_SERVED,
    "tests.test_commands.TestRedisCommands::test_getrange": _NOT_SERVED,
    "tests.test_commands.TestRedisCommands::test_setrange": _NOT_SERVED,
    "tests.test_commands.TestRedisCommands::test_pexpiretime": "an engine keeps a TTL as time left on a "
        "monotonic clock: PEXPIRETIME is within a millisecond of the time set, not always equal",
}


def run(src: Path, port: int, protocol: int, label: str, args: list[str]) -> dict[str, str]:
    junit = BUILD / f"redispy-{label}-resp{protocol}.xml"
    junit.unlink(missing_ok=True)
    log = BUILD / f"redispy-{label}-resp{protocol}.log"
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "pytest", "-c", str(src / "pyproject.toml"), "--rootdir", str(src),
                        "-o", "addopts=", "-p", "no:cacheprovider", "-q", "--junitxml", str(junit),
                        f"--redis-url=redis://127.0.0.1:{port}/0", f"--protocol={protocol}", "-k", SELECTION,
                        *FILES, *args], cwd=src, stdout=out, stderr=subprocess.STDOUT, timeout=1200)
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report for {label} (RESP{protocol}); see {log}")
    return outcomes(junit, qualified=True)


def main(args: list[str]) -> int:
    src = sdist_tests("redis", importlib.metadata.version("redis"), "tests/test_commands.py")
    engine = "memory"
    if args and args[0].startswith("--engine="):
        engine, args = args[0].split("=", 1)[1], args[1:]
    real = RealRedis()
    backing = RealRedis() if engine == "redis" else None
    storage = RedisStorage(backing.url, key_prefix="c:", timeout=5.0) if backing is not None else None
    ours = start_ours(resp=RespProtocol(allow_flush=True), storage=storage)
    problems: list[str] = []
    try:
        for protocol in (2, 3):
            theirs = run(src, real.port, protocol, "redis", args)
            mine = run(src, ours.port, protocol, "ours", args)
            owed = sorted(n for n, s in theirs.items() if s == "passed")
            problems += report(f"RESP{protocol}: {len(owed)} tests pass on redis-server; on ours ({engine})", owed,
                               mine, lambda n: DOES_NOT_APPLY.get(n) or DOES_NOT_APPLY.get(f"{n}[resp{protocol}]"),
                               lambda n: f"{n}[resp{protocol}]")
    finally:
        ours.stop()
        real.stop()
        if backing is not None:
            backing.stop()
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
