"""The session fixture ``dist``: covet-pipe's sdist and wheel built from this checkout, each installed in a fresh venv.

``python -m build`` with build isolation, as a release does (setuptools and Cython fetched into a throwaway
environment); the slowest thing in the suite, so every test that needs an installed covet-pipe shares it
(tests/conftest.py makes it visible to all of them).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["ROOT", "STEP", "Dist", "dist", "_run"]

ROOT = Path(__file__).resolve().parents[1]
#: seconds for one pip install or build step: generous for a loaded 2-core machine, never a speed check
STEP = 600
def _run(cmd: list[str], cwd: Path, timeout: float = STEP) -> subprocess.CompletedProcess[str]:
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


def _wait(proc: subprocess.Popen[str], what: str, log: Path) -> None:
    code = proc.wait(STEP)
    if code != 0:
        raise AssertionError(f"{what} exited {code}:\n{log.read_text()}")


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    base = tmp_path_factory.mktemp("install")
    out = base / "dist"
    # the sdist first (no compiling); then its two compiles side by side, one per core: the wheel built from
    # the unpacked sdist (what is missing from the sdist fails here) and pip's install of the sdist itself
    _run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)], cwd=base)
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(base / "unpacked", filter="data")
    (unpacked,) = (base / "unpacked").iterdir()
    venvs = {"wheel": base / "venv-wheel", "sdist": base / "venv-sdist"}
    running: list[subprocess.Popen[str]] = []
    try:
        running.append(installing_sdist := _new_venv(venvs["sdist"], sdist))
        with open(base / "wheel.log", "w") as log:
            running.append(building := subprocess.Popen(
                [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(unpacked)], cwd=base,
                stdout=log, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL))
        _wait(building, "python -m build --wheel (from the sdist)", base / "wheel.log")
        (wheel,) = out.glob("*.whl")
        running.append(installing_wheel := _new_venv(venvs["wheel"], wheel))
        _wait(installing_wheel, "pip install of the wheel", venvs["wheel"] / "install.log")
        _wait(installing_sdist, "pip install of the sdist", venvs["sdist"] / "install.log")
    finally:
        # a step cut short (its own bound, the test's timeout) is not left running: its Popen's
        # "still running" ResourceWarning would surface at the session's end as an unraisable exception
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield Dist(wheel, sdist, venvs)
