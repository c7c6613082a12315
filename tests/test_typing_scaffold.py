"""mypy --strict passes on a scaffolded plugin and its test, outside the checkout, without MYPYPATH.

Once against this repo's editable install (.venv: setup.py makes it a path entry in a .pth file, which
type checkers read, instead of setuptools' import-hook finder, which they cannot run), once against the
installed wheel (tests/_dist.py) with ``--python-executable``. A revealed type proves the stubs of the
compiled core were read: a covet_pipe that mypy could not find would be ``Any`` and an import error.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._dist import COMPILE, STEP, Dist

pytestmark = pytest.mark.timeout(COMPILE + 3 * STEP)

REVEAL = '''
from covet_pipe import Request
from covet_pipe.testing import LoadedPlugin

reveal_type(Request().headers)
reveal_type(LoadedPlugin.request)
'''


def _mypy(where: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null",
                           *args], cwd=where, capture_output=True, text=True, timeout=STEP, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _scaffold(python: Path, where: Path) -> list[str]:
    for args in (["new", "plain"], ["new", "packed", "--package"]):
        subprocess.run([str(python), "-m", "covet_pipe", *args], cwd=where, check=True, capture_output=True,
                       timeout=STEP)
    (where / "reveal.py").write_text(REVEAL)
    return ["plain/plugins", "plain/tests", "packed/src", "packed/tests", "reveal.py"]


def _assert_typed(out: str) -> None:
    assert 'Revealed type is "covet_pipe._core.Headers"' in out, out
    assert 'Revealed type is "def (self: covet_pipe.testing._loaded.LoadedPlugin' in out, out
    assert "Success: no issues found in 5 source files" in out, out


def test_scaffolded_plugin_passes_mypy_strict_against_the_editable_install(tmp_path: Path) -> None:
    import covet_pipe
    assert not Path(covet_pipe.__file__).is_relative_to(tmp_path)
    _assert_typed(_mypy(tmp_path, *_scaffold(Path(sys.executable), tmp_path)))


def test_scaffolded_plugin_passes_mypy_strict_against_the_installed_wheel(dist: Dist, tmp_path: Path) -> None:
    python = dist.venvs["wheel"] / "bin" / "python"
    files = _scaffold(python, tmp_path)     # the installed wheel's own templates
    _assert_typed(_mypy(tmp_path, "--python-executable", str(python), *files))
