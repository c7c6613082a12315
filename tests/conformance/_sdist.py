"""What the conformance runners share: a peer's own tests from its sdist, and the outcomes of a pytest run."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"


def sdist_tests(project: str, version: str, marker: str, keep: tuple[str, ...] = ("pyproject.toml",)) -> Path:
    """*project* *version*'s sdist unpacked into build/: its ``tests/`` and the files *keep* names.

    ``pip download`` fetches the sdist once (nothing is fetched when build/ has it); the package's own
    sources are not unpacked, so the installed one is the one tested. *marker* is a file under the
    unpacked folder whose presence means the unpacking was done.
    """
    dest = BUILD / f"{project}-{version}"
    if (dest / marker).exists():
        return dest
    archive = BUILD / f"{project}-{version}.tar.gz"
    if not archive.exists():
        BUILD.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                        "--no-binary", ":all:", "--no-deps", f"{project}=={version}", "-d", str(BUILD)],
                       check=True)
    prefix = f"{project}-{version}/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith(prefix + "tests/") or m.name in {prefix + k for k in keep}]
        tar.extractall(BUILD, members=members, filter="data")
    return dest


def outcomes(junit: Path, qualified: bool = False) -> dict[str, str]:
    """test id -> passed / failed / skipped, from pytest's junit XML; *qualified*: ``classname::name``."""
    result = {}
    for case in ET.parse(junit).iter("testcase"):
        name = case.get("name", "")
        if qualified:
            name = f"{case.get('classname', '')}::{name}"
        if case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        elif case.find("skipped") is not None:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def report(title: str, owed: list[str], ours: dict[str, str], known: Callable[[str], str | None],
           shown: Callable[[str], str] = str) -> list[str]:
    """Print which of the *owed* tests (those that pass for the peer) fail on ours; the problems of the run.

    *title* starts the summary line (it goes on "N pass, M fail"); *known* gives the reason a test may
    fail (None: it may not); *shown* is the name a test is printed under.
    """
    failing = [n for n in owed if ours.get(n) != "passed"]
    print(f"{title} {len(owed) - len(failing)} pass, {len(failing)} fail")
    problems = []
    for name in failing:
        reason = known(name)
        print(f"  {'known' if reason else 'FAILS'}: {shown(name)}" + (f": {reason}" if reason else ""))
        if reason is None:
            problems.append(f"{shown(name)} fails")
    return problems


def stale(known: dict[str, str], ours: dict[str, str]) -> list[str]:
    """The entries of *known* that no longer hold: the test passes on ours now, or did not run."""
    problems = []
    for name in known:
        if ours.get(name) == "passed":
            problems.append(f"{name} passes now: take it out of DOES_NOT_APPLY")
        elif name not in ours:
            problems.append(f"{name} did not run: is DOES_NOT_APPLY out of date?")
    return problems
