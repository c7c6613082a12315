"""The ``dist`` session fixture: covet-pipe's sdist and wheel, built once, each installed in a fresh venv.

It builds both with ``python -m build`` (build isolation, as a release does): the sdist, then the wheel from
the unpacked sdist while pip installs the sdist into a new venv (the core's two compiles side by side, one
per core), then the wheel into another new venv: the slowest setup of the suite,
so every test that needs an installed covet-pipe shares it (tests/conftest.py makes it a fixture for all).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

__all__ = ["COMPILE", "ROOT", "STEP", "Dist", "dist", "run"]

ROOT = Path(__file__).resolve().parents[1]
#: seconds for one pip install or build step: generous for a loaded 2-core machine, never a speed check
STEP = 240
#: seconds for one compile of the core (the wheel's, the sdist install's): two run side by side, and on a
#: machine busy with other work one took 345 s
COMPILE = 600


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


def _wait(proc: subprocess.Popen[str], what: str, log: Path, bound: float = STEP) -> None:
    code = proc.wait(bound)
    if code != 0:
        raise AssertionError(f"{what} exited {code}:\n{log.read_text()}")


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dist]:
    base = tmp_path_factory.mktemp("install")
    out = base / "dist"
    # the sdist first (no compiling); then its two compiles side by side, one per core: the wheel built from
    # the unpacked sdist (what is missing from the sdist fails here) and pip's install of the sdist itself
    run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)], cwd=base)
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
        _wait(building, "python -m build --wheel (from the sdist)", base / "wheel.log", COMPILE)
        (wheel,) = out.glob("*.whl")
        running.append(installing_wheel := _new_venv(venvs["wheel"], wheel))
        _wait(installing_wheel, "pip install of the wheel", venvs["wheel"] / "install.log")
        _wait(installing_sdist, "pip install of the sdist", venvs["sdist"] / "install.log", COMPILE)
    finally:
        # a step cut short (its own bound, the test's timeout) is not left running: its Popen's
        # "still running" ResourceWarning would surface at the session's end as an unraisable exception
        for proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    yield Dist(wheel, sdist, venvs)
