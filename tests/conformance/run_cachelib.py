"""``make resp-conformance`` (second part): cachelib's own RedisCache tests, against our RESP port.

cachelib is the cache layer under Flask-Caching and Flask-Session: a user points it at a Redis and
expects get/set with timeouts, add, set_many (a MULTI/EXEC pipeline), get_many, delete_many, inc/dec,
has and clear (KEYS + DEL under a key prefix, FLUSHDB without one) to work. The tests are those of the
pinned cachelib sdist (``pip download`` into ``build/`` once), run in a venv of their own under
``build/cachelib-venv`` (cachelib, pytest-xprocess, which its conftest imports, and the redis-py and
pytest this environment has), once against a real redis-server and once against our RespProtocol over
MemoryStorage, each on a free 127.0.0.1 port.

cachelib's tests hard-code port 6360 and start a redis-server there through pytest-xprocess; the runner
copies ``test_redis_cache.py`` with that port replaced by the one under test and a module-level
``redis_server`` fixture that starts nothing (the runner has). Nothing else of the suite is changed.

The run passes when every test that passes on redis-server passes on ours, except those in
``DOES_NOT_APPLY`` (each with its reason). ``python tests/conformance/run_cachelib.py [pytest args]``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from covet_pipe.builtin import RespProtocol  # noqa: E402
from tests._redis import RealRedis  # noqa: E402
from tests.conformance._sdist import BUILD, outcomes, report, sdist_tests, stale  # noqa: E402
from tests.server._resp_fixtures import start_ours  # noqa: E402

CACHELIB = "0.17.0"
XPROCESS = "1.0.2"
VENV = BUILD / "cachelib-venv"
#: tests that pass on redis-server and fail on ours, and why
DOES_NOT_APPLY: dict[str, str] = {}

NO_SERVER = '''

@pytest.fixture(scope="class")
def redis_server():
    """The server under test was started by run_cachelib.py on 127.0.0.1:{port}."""
    yield
'''


def venv() -> Path:
    python = VENV / "bin" / "python"
    stamp = VENV / f".cachelib-{CACHELIB}"
    if not stamp.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pins = [f"cachelib=={CACHELIB}", f"pytest-xprocess=={XPROCESS}",
                f"redis=={importlib.metadata.version('redis')}", f"pytest=={importlib.metadata.version('pytest')}"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *pins], check=True)
        stamp.touch()
    return python


def run(python: Path, src: Path, port: int, label: str, args: list[str]) -> dict[str, str]:
    original = (src / "tests" / "test_redis_cache.py").read_text()
    if original.count("port=6360") != 2:
        raise SystemExit("cachelib's test_redis_cache.py no longer names port=6360 twice: update run_cachelib.py")
    test = src / "tests" / "test_redis_cache_at_port.py"
    test.write_text(original.replace("port=6360", f'host="127.0.0.1", port={port}') + NO_SERVER.format(port=port))
    junit = BUILD / f"cachelib-{label}.xml"
    junit.unlink(missing_ok=True)
    log = BUILD / f"cachelib-{label}.log"
    try:
        with log.open("w") as out:
            subprocess.run([str(python), "-m", "pytest", "-c", str(src / "pyproject.toml"), "--rootdir", str(src),
                            "-p", "no:cacheprovider", "-q", "--junitxml", str(junit), str(test), *args],
                           cwd=src / "tests", stdout=out, stderr=subprocess.STDOUT, timeout=600)
    finally:
        test.unlink()
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report for {label}; see {log}")
    return outcomes(junit, qualified=True)


def main(args: list[str]) -> int:
    python = venv()
    src = sdist_tests("cachelib", CACHELIB, "tests/test_redis_cache.py")
    real = RealRedis()
    ours = start_ours(resp=RespProtocol(allow_flush=True))
    problems: list[str] = []
    try:
        theirs = run(python, src, real.port, "redis", args)
        mine = run(python, src, ours.port, "ours", args)
    finally:
        ours.stop()
        real.stop()
    owed = sorted(n for n, s in theirs.items() if s == "passed")
    if len(owed) < 50:
        problems.append(f"only {len(owed)} cachelib tests pass on redis-server: see {BUILD / 'cachelib-redis.log'}")
    problems += report(f"cachelib {CACHELIB} RedisCache: {len(owed)} tests pass on redis-server; on ours",
                       owed, mine, DOES_NOT_APPLY.get)
    problems += stale(DOES_NOT_APPLY, mine)
    for problem in problems:
        print("problem:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
