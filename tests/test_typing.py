"""The stubs of the compiled core type-check as documented (msgspec's habit)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent / "typing" / "examples.py"


def test_reveal_type_matches_expected_types_in_examples():
    pytest.importorskip("mypy")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null",
         "--ignore-missing-imports", "--follow-imports=silent", str(EXAMPLES)],
        capture_output=True, text=True, cwd=Path(__file__).parent.parent,
    ).stdout
    revealed = {}
    for line in out.splitlines():
        m = re.match(rf"{re.escape(str(EXAMPLES))}:(\d+): note: Revealed type is \"(.*)\"", line)
        if m is None:
            m = re.match(r".*examples\.py:(\d+): note: Revealed type is \"(.*)\"", line)
        if m:
            revealed[int(m.group(1))] = m.group(2)
    expected = {}
    for number, line in enumerate(EXAMPLES.read_text().splitlines(), 1):
        m = re.search(r"# assert \"(.*)\"", line)
        if m and "reveal_type" in line:
            expected[number] = m.group(1)
    assert expected, "no reveal_type examples found"
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not errors, "\n".join(errors)
    for number, want in expected.items():
        got = revealed.get(number)
        assert got is not None, f"line {number}: mypy revealed nothing\n{out}"
        assert got == want or got.endswith("." + want), f"line {number}: expected {want!r}, got {got!r}"
