"""covet_pipe.logsafe.printable: no client or plugin byte can start a new log line or drive a terminal."""
import pytest

from covet_pipe.logsafe import printable


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
