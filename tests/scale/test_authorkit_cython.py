"""`covet-pipe new --kind cython` walked like the other kinds (tests/test_cli_new.py): new -> build -> check ->
its own test -> served; here since Cython and the C compiler take ~20 s on a busy machine (`make authorkit`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli_new import walk


def test_new_cython_builds_checks_passes_its_test_and_serves(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    walk(tmp_path, "cython", capsys)
