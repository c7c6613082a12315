"""``covet-pipe install NAME [PIP ARGS]``: pip-install a plugin package, then say whether covet-pipe will load it.

pip runs in this interpreter (``python -m pip install NAME ...``) with a constraint that keeps the running
covet-pipe as it is (a plugin that asks for another covet-pipe is refused by pip instead of replacing it).
Then each plugin package the install added or named is checked as discovery checks it
(:mod:`covet_pipe.compat`): one whose declared covet-pipe or native ABI range leaves out the running ones
stays installed but is not loaded; the command says what does not match and what to do, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from covet_pipe.cli.errors import EXIT_OK, FailedError, UsageError
from covet_pipe.compat import ENTRY_POINT_GROUP, check_distribution, running_abi, running_version

__all__ = ["add_install", "run_install"]


def _installed() -> dict[str, str]:
    importlib.invalidate_caches()       # what pip just wrote is read afresh
    return {canonicalize_name(d.metadata["Name"] or ""): d.version for d in importlib.metadata.distributions()}


def _named(target: str) -> str | None:
    """The distribution name *target* (a requirement, a wheel's path) names, when it can be told."""
    base = os.path.basename(target)
    if base.endswith(".whl"):
        try:
            return canonicalize_name(parse_wheel_filename(base)[0])
        except InvalidWheelFilename:
            return None
    try:
        return canonicalize_name(Requirement(target).name)
    except InvalidRequirement:
        return None


def _plugin_dists(names: set[str]) -> list[importlib.metadata.Distribution]:
    found = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and canonicalize_name(ep.dist.metadata["Name"] or "") in names:
            found[canonicalize_name(ep.dist.metadata["Name"] or "")] = ep.dist
    return [found[k] for k in sorted(found)]


def run_install(args: argparse.Namespace) -> int:
    if args.name.startswith("-"):
        raise UsageError(f"{args.name}: give the package first, then pip's options "
                         "(covet-pipe install NAME --no-index --find-links DIR)")
    before = _installed()
    with tempfile.TemporaryDirectory(prefix="covet-pipe-install-") as tmp:
        keep = os.path.join(tmp, "constraints.txt")
        with open(keep, "w") as f:
            f.write(f"covet-pipe=={running_version()}\n")
        cmd = [sys.executable, "-m", "pip", "install", "-c", keep, args.name, *args.pip_args]
        code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
    if code != 0:
        raise FailedError(
            f"pip install {args.name} failed (exit {code}, its output is above); nothing was enabled. When pip "
            f"says the package requires another covet-pipe, it does not fit this covet-pipe {running_version()}: "
            "install a release of it made for this one (covet-pipe install never replaces covet-pipe itself)")
    after = _installed()
    touched = {name for name, version in after.items() if before.get(name) != version}
    named = _named(args.name)
    plugins = _plugin_dists(touched | ({named} if named else set()))
    if not plugins:
        raise FailedError(f"pip installed {args.name}, but it provides no {ENTRY_POINT_GROUP!r} entry point, so "
                          "it is not a covet-pipe plugin package; pip uninstall it if you installed it for that")
    refused = []
    for dist in plugins:
        fit = check_distribution(dist)
        eps = ", ".join(sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP))
        if fit.ok:
            print(f"installed {dist.name} {dist.version} (plugins: {eps}): fits covet-pipe {running_version()} "
                  f"({fit.requires}) and native ABI {running_abi()} (abi {fit.abi}); covet-pipe serve loads it")
        else:
            refused.append(f"{dist.name} {dist.version} is installed but not enabled: covet-pipe will not load it "
                           f"(plugins: {eps}): {'; '.join(fit.problems)}; or remove it: pip uninstall {dist.name}")
    if refused:
        raise FailedError("\n".join(refused))
    return EXIT_OK


def add_install(sub: Any) -> None:
    """The ``install`` subcommand."""
    p = sub.add_parser(
        "install", help="pip-install a plugin package and enable it only when it fits this covet-pipe",
        description="pip install NAME (in this interpreter), then check the covet-pipe and native ABI ranges the "
                    "package declares against this covet-pipe: one that does not fit is not loaded (exit 1). "
                    "Options after NAME go to pip: covet-pipe install NAME --no-index --find-links DIR.")
    p.add_argument("name", metavar="NAME", help="what pip installs: a package name or requirement, or a wheel's path")
    p.add_argument("pip_args", nargs=argparse.REMAINDER, metavar="PIP ARGS", help="passed to pip install")
    p.set_defaults(run=run_install)
