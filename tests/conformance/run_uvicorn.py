"""``make conformance``: uvicorn's own HTTP protocol tests, run against covet-pipe's ``UvicornHTTP``.

The tests are those of the uvicorn installed in this environment: ``pip download`` fetches that
version's sdist from the package index into ``build/`` (once; nothing is fetched when it is there),
its ``tests/`` are unpacked beside it (not its ``uvicorn/`` sources, so the installed uvicorn is the
one tested), and ``uvicorn_conftest.py`` is installed as ``tests/protocols/conftest.py`` to add
covet-pipe's class to the parametrization of ``test_http.py``.

The run passes when every test that passes for uvicorn's httptools class passes for covet-pipe's,
except those in ``DOES_NOT_APPLY`` (each with the reason); a listed test that passes, or any other
failure, fails the run. ``python tests/conformance/run_uvicorn.py [pytest args]``.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conformance._sdist import BUILD, outcomes, report, sdist_tests, stale  # noqa: E402

HERE = Path(__file__).resolve().parent

_INTERNALS = "reads uvicorn's connection internals"
#: uvicorn tests that fail for covet-pipe's class, and why (docs/protocols.md lists them)
DOES_NOT_APPLY: dict[str, str] = {
    "test_keepalive_timeout_with_pipelined_requests[covet-pipe]":
        _INTERNALS + " (timeout_keep_alive_task); covet-pipe's connection has one timer for every deadline",
    "test_scopes[covet-pipe-asgi3app-expected_scopes0]": _INTERNALS + " (the last request's scope)",
    "test_scopes[covet-pipe-asgi2app-expected_scopes1]": _INTERNALS + " (the last request's scope); and an "
        "ASGI 2 app, which uvicorn wraps, gets asgi.version 3.0 from covet-pipe where uvicorn says 2.0",
    "test_unsupported_ws_upgrade_request_warn_on_auto[covet-pipe]":
        _INTERNALS + " (sets ws_protocol_class on the connection after it was made)",
    "test_header_upgrade_is_not_websocket_depend_installed[covet-pipe]":
        "an upgrade covet-pipe does not take is served as HTTP without uvicorn's 'Unsupported upgrade "
        "request.' warning",
    "test_header_upgrade_is_websocket_depend_not_installed[covet-pipe]":
        "an upgrade covet-pipe does not take is served as HTTP without uvicorn's 'Unsupported upgrade "
        "request.' and 'No supported WebSocket library detected' warnings",
    "test_max_concurrency[covet-pipe]": "compares the whole 503 response: covet-pipe adds its date and server "
        "headers, which uvicorn adds from the server's state (none in the test's)",
    "test_websocket_upgrade_failure_cleans_up_connection[covet-pipe]":
        _INTERNALS + " (the connections and tasks of the HTTP connection the websocket failed on)",
}


def compare(result: dict[str, str]) -> list[str]:
    """The problems of a run: unexpected covet-pipe failures and stale DOES_NOT_APPLY entries."""
    ours = {n: s for n, s in result.items() if "[covet-pipe" in n}
    theirs = {n: s for n, s in result.items() if "[httptools" in n}
    passed_for_httptools = {n.replace("[httptools", "[covet-pipe") for n, s in theirs.items() if s == "passed"}
    owed = sorted(n for n in passed_for_httptools if n in ours)
    problems = report(f"\nuvicorn's test_http.py: {len(owed)} pass for httptools; for covet-pipe", owed, ours,
                      DOES_NOT_APPLY.get)
    problems += stale(DOES_NOT_APPLY, ours)
    return problems


def main(args: list[str]) -> int:
    version = importlib.metadata.version("uvicorn")
    src = sdist_tests("uvicorn", version, "tests/protocols/test_http.py", keep=("pyproject.toml", "LICENSE.md"))
    shutil.copyfile(HERE / "uvicorn_conftest.py", src / "tests" / "protocols" / "conftest.py")
    junit = src / "junit.xml"
    junit.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "pytest", "-c", str(src / "pyproject.toml"), "--rootdir", str(src),
                    "-o", "addopts=-rxXs", "-p", "no:cacheprovider", "-p", "no:asyncio", "-q", "--junitxml", str(junit),
                    str(src / "tests" / "protocols" / "test_http.py"), *args], cwd=src)
    if not junit.exists():
        print("pytest wrote no report", file=sys.stderr)
        return 2
    problems = compare(outcomes(junit))
    for problem in problems:
        print("conformance:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
