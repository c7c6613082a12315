"""The ``dist`` session fixture: covet-pipe's sdist and wheel, built once, each installed in a fresh venv.

It builds both with ``python -m build`` (build isolation, as a release does) and installs the wheel into one
new venv and the sdist into another, which compiles the core a second time: the slowest setup of the suite,
so every test that needs an installed covet-pipe shares it (tests/conftest.py makes it a fixture for all).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["ROOT", "STEP", "Dist", "dist", "run"]

ROOT = Path(__file__).resolve().parents[1]
#: seconds for one pip install or build step: generous for a loaded 2-core machine, never a speed check
STEP = 240


def run(cmd: list[str], cwd: Path, timeout: float = STEP) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Dist:
    wheel: Path
    sdist: Path
    #: the venv each artifact is installed in: {"wheel": ..., "sdist": ...}
    venvs: dict[str, Path]


def _new_venv(path: Path, artifact: Path) -> subprocess.Popen[str]:
    """Create a venv at *path* and start installing *artifact* into it (its dependencies from the index)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=STEP)
    with open(path / "install.log", "w") as log:        # the child keeps its own descriptor
        return subprocess.Popen([str(path / "bin" / "python"), "-m", "pip", "install", "-q", str(artifact)],
                                cwd=path, stdout=log, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    base = tmp_path_factory.mktemp("install")
    out = base / "dist"
    # the sdist, then the wheel built from the unpacked sdist: what is missing from the sdist fails here
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], cwd=base)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    venvs = {"wheel": base / "venv-wheel", "sdist": base / "venv-sdist"}
    installs = {kind: _new_venv(venvs[kind], artifact) for kind, artifact in (("sdist", sdist), ("wheel", wheel))}
    try:
        for kind, proc in installs.items():
            code = proc.wait(STEP)
            if code != 0:
                raise AssertionError(f"pip install of the {kind} exited {code}:\n"
                                     f"{(venvs[kind] / 'install.log').read_text()}")
    finally:
        # an install cut short (its own bound, the test's timeout) is not left running: its Popen's
        # "still running" ResourceWarning would surface at the session's end as an unraisable exception
        for proc in installs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield Dist(wheel, sdist, venvs)


