"""`covet-pipe check` on every bad library tests/native/test_loader.py knows, and `build` refusing what it cannot load."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from covet_pipe.cli import main
from tests.native._abi import build
from tests.native._cplugins import PLUGINS, cplugins, probe  # noqa: F401 (the fixture)
from tests.native.test_loader import BAD

pytestmark = pytest.mark.usefixtures("cplugins")


def test_check_a_folder_of_bad_libraries_names_each_problem(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    made = tmp_path / "made"
    made.mkdir()
    for make, _ in BAD.values():
        lib = make(made)
        shutil.copyfile(lib, folder / lib.name)
    assert len(list(folder.iterdir())) == len(BAD), "every bad library has a name of its own"
    shutil.copyfile(probe("fine"), folder / "fine.so")
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out
    problems = [x for x in out.splitlines() if x.startswith("problem: ")]
    for kind, (_, says) in BAD.items():
        assert any(re.search(says, p) for p in problems), f"{kind}: /{says}/ not in:\n{out}"
    assert len(problems) == len(BAD), out
    assert "ok: fine 1.0.0 (c, ABI 1.1)" in out
    assert "Traceback" not in out


def test_check_one_library_without_an_entry_symbol_exits_1(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    make, says = BAD["missing-entry-symbol"]
    lib = make(tmp_path)
    assert main(["check", str(lib)]) == 1
    out = capsys.readouterr().out
    assert re.search(says, out) and out.startswith(f"problem: {lib}")


def test_check_refuses_a_native_plugin_whose_manifest_asks_for_the_sandbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "caged.so"
    shutil.copyfile(probe("caged"), lib)
    (tmp_path / "caged.covet-plugin.toml").write_text("sandbox = true\n")
    assert main(["check", str(lib)]) == 1
    assert "a native plugin runs in-process and cannot be sandboxed" in capsys.readouterr().out


def test_build_of_a_library_without_an_entry_symbol_fails_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "no_entry.c"
    shutil.copyfile(PLUGINS / "no_entry.c", src)
    proc = build(src)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "built " not in proc.stdout
    assert f"{src} compiled, but the result cannot be loaded (removed):" in proc.stderr
    assert "exports neither covet_plugin_entry_v1" in proc.stderr
    assert not (tmp_path / "no_entry.so").exists()
