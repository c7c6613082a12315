"""Client bytes that reach a log line are escaped: the access log and plugins' error messages (covet-pipe serve)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.security._servers import covet_serve, get
from tests.server.conftest import WAIT, exchange

#: the request of the report: a CRLF in the encoded target that would write a second, forged line
FORGED = b"/x%0d%0a6.6.6.6:1%20-%20%22GET%20/admin%20HTTP/1.1%22%20200"


def _lines(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def _wait_for(proc: object, needle: str) -> str:
    deadline = time.monotonic() + WAIT
    while True:
        out = proc.output()  # type: ignore[attr-defined]
        if needle in out or time.monotonic() > deadline:
            return out
        time.sleep(0.05)


def test_access_log_writes_the_crlf_request_as_one_escaped_line(tmp_path: Path) -> None:
    with covet_serve("tests.security._logapp:app", "--access-log", log=tmp_path / "log") as proc:
        r = get(proc.port, FORGED)
        out = _wait_for(proc, "covet_pipe.access")
    assert r.status == 200
    access = _lines(out, "covet_pipe.access")
    assert len(access) == 1, out
    # the target as the client sent it, still encoded: no CR, no LF, no second request line
    assert access[0].endswith('"GET /x%0d%0a6.6.6.6:1%20-%20%22GET%20/admin%20HTTP/1.1%22%20200 HTTP/1.1" 200')
    assert not any(line.startswith("6.6.6.6") for line in out.splitlines())


def test_raw_control_bytes_in_the_target_get_400_and_stay_out_of_the_log(tmp_path: Path) -> None:
    with covet_serve("tests.security._logapp:app", "--access-log", log=tmp_path / "log") as proc:
        # 0x9b is a terminal's CSI; ESC and DEL are controls too
        replies = [exchange(proc.port, b"GET /q" + raw + b"31m HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")[0][0]
                   for raw in (b"\x9b", b"\x1b", b"\x7f")]
        out = _wait_for(proc, "Invalid HTTP request")
    assert [r.status for r in replies] == [400, 400, 400]
    assert not _lines(out, "covet_pipe.access")
    assert not any(c in out for c in "\x9b\x1b\x7f")


def test_plugin_error_quoting_a_crlf_path_and_header_logs_one_escaped_line(tmp_path: Path) -> None:
    with covet_serve("tests.security._logapp:app", log=tmp_path / "log") as proc:
        r = get(proc.port, b"/boom%0d%0aFORGED%1b[2J", [("x-note", "tab\there\x9b")])
        out = _wait_for(proc, "raised in process_request")
    assert r.status == 500 and b"cannot serve" not in r.body          # the client gets no message
    (line,) = _lines(out, "raised in process_request")
    assert "cannot serve /boom\\r\\nFORGED\\x1b[2J for tab\\there\\x9b" in line, line
    # the traceback's last line repeats the message: escaped there too
    assert "ValueError: cannot serve /boom\\r\\nFORGED\\x1b[2J for tab\\there\\x9b" in out
    assert not any(c in out for c in "\x1b\x9b")
    assert not any(line.startswith("FORGED") for line in out.splitlines())


def test_app_exception_quoting_a_crlf_path_logs_an_escaped_traceback(tmp_path: Path) -> None:
    with covet_serve("tests.security._logapp:app", log=tmp_path / "log") as proc:
        r = get(proc.port, b"/crash%0d%0aFORGED%1b[2J")
        out = _wait_for(proc, "the app cannot serve")
    assert r.status == 500 and b"cannot serve" not in r.body
    # the pipeline answered for the app and logged it once, as one line and an escaped traceback
    (line,) = _lines(out, "the app raised before it started its response")
    assert "GET /crash\\r\\nFORGED\\x1b[2J: RuntimeError: the app cannot serve /crash\\r\\nFORGED" in line, line
    assert "RuntimeError: the app cannot serve /crash\\r\\nFORGED\\x1b[2J" in out, out
    assert "\x1b" not in out and not any(line.startswith("FORGED") for line in out.splitlines())
