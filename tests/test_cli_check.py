"""`covet-pipe check`: the broken Python plugins the project's tests know, each problem named with what to do.

The native ones (wrong ABI, no entry symbol, not ELF, truncated ...) are in tests/native/test_check.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from covet_pipe.cli import main

PLUGIN = '''
from covet_pipe import MiddlewarePlugin

class P(MiddlewarePlugin):
    name = "{name}"
    version = "{version}"
    dependencies = {deps!r}

plugin = P()
'''

#: file -> its text; manifests beside them below
BROKEN = {
    "cyc_a.py": PLUGIN.format(name="cyc_a", version="1.0.0", deps=["cyc_b"]),
    "cyc_b.py": PLUGIN.format(name="cyc_b", version="1.0.0", deps=["cyc_a"]),
    "base.py": PLUGIN.format(name="base", version="1.0.0", deps=[]),
    "wants_new.py": PLUGIN.format(name="wants_new", version="1.0.0", deps=["base>=2,<3"]),
    "orphan.py": PLUGIN.format(name="orphan", version="1.0.0", deps=["nowhere>=1"]),
    "raises.py": "raise RuntimeError('no config file')\n",
    "typo.py": "def broken(:\n",
    "nothing.py": "x = 1\n",
    "bad_toml.py": PLUGIN.format(name="bad_toml", version="1.0.0", deps=[]),
    "unknown_field.py": PLUGIN.format(name="unknown_field", version="1.0.0", deps=[]),
    "wrong_type.py": PLUGIN.format(name="wrong_type", version="1.0.0", deps=[]),
}
MANIFESTS = {
    "bad_toml.covet-plugin.toml": "name = \n",
    "unknown_field.covet-plugin.toml": "sandboxed = true\n",
    "wrong_type.covet-plugin.toml": "priority = \"high\"\n",
}
#: what the report says, one problem each
SAYS = [
    "problem: dependency cycle: cyc_a -> cyc_b -> cyc_a; remove one of these dependencies",
    "problem: plugin 'wants_new' needs 'base>=2,<3', but base 1.0.0 is what there is; install a base that "
    "satisfies '<3,>=2' or relax the constraint",
    "problem: plugin 'orphan' needs 'nowhere>=1', which is neither checked here nor installed",
    "raises.py: importing it raised RuntimeError: no config file; fix the module-level code",
    "typo.py: syntax error at line 1",
    "nothing.py defines neither create_plugin(config) nor a module-level `plugin`; add one of them",
    "bad_toml.covet-plugin.toml is not valid TOML",
    "unknown_field.covet-plugin.toml: unknown field 'sandboxed'; known fields: name, version",
    "wrong_type.covet-plugin.toml: priority: expected `int`, got `str` ('high')",
]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, text in {**BROKEN, **MANIFESTS}.items():
        (folder / name).write_text(text)
    return folder


def test_check_a_folder_of_broken_plugins_names_every_problem_and_exits_1(
        broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(broken)]) == 1
    out, err = capsys.readouterr()
    for line in SAYS:
        assert line in out, f"{line!r} not in:\n{out}"
    problems = [x for x in out.splitlines() if x.startswith("problem: ")]
    assert len(problems) == len(SAYS), out
    assert "ok: base 1.0.0 (python)" in out
    assert f"{broken}: {len(SAYS)} problems" in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize("name", ["raises.py", "bad_toml.py", "nothing.py"])
def test_check_one_broken_file_exits_1(broken: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(broken / name)]) == 1
    assert capsys.readouterr().out.count("problem: ") == 1


def test_check_a_good_plugin_exits_0(broken: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(broken / "base.py")]) == 0
    out = capsys.readouterr().out
    assert "ok: base 1.0.0 (python)" in out and f"{broken / 'base.py'}: no problems" in out


def test_check_runs_the_import_in_another_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "imported-by"
    (tmp_path / "p.py").write_text(f"import os, pathlib\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
                                   + PLUGIN.format(name="p", version="1.0.0", deps=[]))
    import os
    assert main(["check", str(tmp_path / "p.py")]) == 0
    assert int(marker.read_text()) != os.getpid()


def test_check_a_sandboxed_plugin_starts_it_confined_and_shows_its_policy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "jail.py").write_text(PLUGIN.format(name="jail", version="2.0.0", deps=[]))
    (tmp_path / "jail.covet-plugin.toml").write_text('sandbox = true\n[permissions]\nmemory_limit = "128MiB"\n')
    assert main(["check", str(tmp_path / "jail.py")]) == 0
    out = capsys.readouterr().out
    assert "ok: jail 2.0.0 (sandboxed)" in out
    assert "note: jail.py runs sandboxed; effective policy: {" in out and '"memory_limit": 134217728' in out


def test_check_a_sandboxed_plugin_that_fails_to_import_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "jail.py").write_text("raise ImportError('needs numpy')\n")
    (tmp_path / "jail.covet-plugin.toml").write_text("sandbox = true\n")
    assert main(["check", str(tmp_path / "jail.py")]) == 1
    out = capsys.readouterr().out
    assert "problem: " in out and "needs numpy" in out


@pytest.mark.parametrize(("what", "says"), [
    ("nowhere-at-all", "no such file or folder, and no installed package or entry point of that name"),
    ("src.c", "is a native plugin's source; build it first (covet-pipe build"),
    ("notes.txt", "is neither a .py file, a .so library nor a plugin folder"),
])
def test_check_what_is_no_plugin_says_what_to_give(tmp_path: Path, what: str, says: str,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("src.c", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert main(["check", what]) == 1
    assert says in capsys.readouterr().out


def test_plugins_lists_no_installed_plugin_packages_here(capsys: pytest.CaptureFixture[str]) -> None:
    # the test venv installs none; tests/scale/test_authorkit_package.py lists one in a fresh venv
    assert main(["plugins"]) == 0
    assert capsys.readouterr().out.startswith("no installed plugin packages (no 'covet_pipe.plugins' entry points)")
