"""covet_pipe.logsafe.printable: no client or plugin byte can start a new log line or drive a terminal."""
import logging
import traceback

import pytest

from covet_pipe.logsafe import escaped_traceback, logger, printable


@pytest.mark.parametrize(("raw", "shown"), [
    ("/x\r\n6.6.6.6 - \"GET /admin\" 200", "/x\\r\\n6.6.6.6 - \"GET /admin\" 200"),
    ("a\x1b[31mred", "a\\x1b[31mred"),
    ("tab\there", "tab\\there"),
    ("back\\slash", "back\\\\slash"),
    ("del\x7f c1\x85 ls\u2028", "del\\x7f c1\\x85 ls\\u2028"),
    ("plain ünïcode", "plain ünïcode"),
    (b"bytes\n\xff\\", "bytes\\n\\xff\\\\"),
])
def test_control_characters_are_escaped(raw, shown):
    out = printable(raw)
    assert out == shown
    assert all(ch.isprintable() for ch in out)


def test_limit_cuts_and_marks_the_cut():
    assert printable("x" * 10, limit=4) == "xxxx..."
    assert printable("xy", limit=4) == "xy"
    assert printable(b"\n" * 10, limit=2) == "\\n\\n..."


def _raise_chained() -> None:
    try:
        raise LookupError("first\r\nFORGED")
    except LookupError as exc:
        raise ValueError("second\x1b[2J") from exc


def test_escaped_traceback_is_the_standard_one_with_messages_escaped():
    try:
        _raise_chained()
    except ValueError as exc:
        caught = exc
    standard = "".join(traceback.format_exception(caught)).rstrip("\n")
    ours = escaped_traceback(caught)
    assert ours == standard.replace("first\r\nFORGED", "first\\r\\nFORGED").replace(
        "second\x1b[2J", "second\\x1b[2J")
    assert "The above exception was the direct cause" in ours
    assert all(ch.isprintable() for line in ours.splitlines() for ch in line)


def test_logger_from_logsafe_escapes_tracebacks_in_any_handler(caplog):
    log = logger("covet_pipe.test_logsafe")
    assert logger("covet_pipe.test_logsafe").filters == log.filters     # added once
    try:
        raise RuntimeError("boom\nFORGED")
    except RuntimeError:
        with caplog.at_level(logging.ERROR, "covet_pipe.test_logsafe"):
            log.exception("failed")
    text = logging.Formatter().format(caplog.records[0])
    assert text.endswith("RuntimeError: boom\\nFORGED")
    assert not any(line.startswith("FORGED") for line in text.splitlines())
