"""Fixtures for native plugin tests: the examples, built once per session with `covet-pipe build`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.native._abi import EXAMPLES, build

SOURCES = {
    "header_rewrite": EXAMPLES / "header_rewrite" / "header_rewrite.c",
    "api_key": EXAMPLES / "api_key" / "api_key.c",
    "path_counter": EXAMPLES / "path_counter" / "path_counter.pyx",
}


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> the .so that `covet-pipe build SOURCE -o DIR` wrote for each example."""
    out = tmp_path_factory.mktemp("examples")
    result = {}
    for name, source in SOURCES.items():
        proc = build(source, out)
        assert proc.returncode == 0, f"building {source} failed:\n{proc.stdout}\n{proc.stderr}"
        result[name] = out / f"{name}.so"
    return result
