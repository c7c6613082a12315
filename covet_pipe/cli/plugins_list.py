"""``covet-pipe plugins``: the installed plugin packages (the ``covet_pipe.plugins`` entry points), not loaded.

One row per entry point: its name, what it names, and the distribution that provides it with its version,
the covet-pipe and native ABI ranges it declares and whether they fit the running ones
(:mod:`covet_pipe.compat`). ``--hash`` adds each package's content hash, the one to pin
(:mod:`covet_pipe.pinning`); ``--hash PATH...`` prints a plugin file's or folder's. ``covet-pipe check NAME``
loads one in a throwaway process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from pathlib import Path
from typing import Any

from covet_pipe.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from covet_pipe.cli.tables import format_table
from covet_pipe.compat import check_distribution, running_abi, running_version
from covet_pipe.discovery import ENTRY_POINT_GROUP
from covet_pipe.errors import PluginError
from covet_pipe.pinning import distribution_hash, path_hash

__all__ = ["add_plugins", "installed_plugins", "run_plugins", "CLASSIFIER"]

#: the trove classifier plugin packages carry on the package index
CLASSIFIER = "Framework :: covet-pipe"
_INDEX_HINT = (f"find plugin packages on the index by their classifier {CLASSIFIER!r} "
               "(https://pypi.org/search/?c=Framework+%3A%3A+covet-pipe); covet-pipe install NAME installs one")


def installed_plugins(hashes: bool = False) -> list[dict[str, str]]:
    """Every entry point of the plugin group, with its distribution, version, declared ranges and verdict."""
    rows = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        row = {"name": ep.name, "target": ep.value, "package": "-", "version": "-", "requires": "-", "abi": "-",
               "compatible": "yes", "problems": ""}
        if dist is not None:
            fit = check_distribution(dist)
            row.update(package=dist.name, version=dist.version, requires=fit.requires, abi=fit.abi,
                       compatible="yes" if fit.ok else "NO", problems="; ".join(fit.problems))
            if hashes:
                try:
                    row["hash"] = distribution_hash(dist)
                except PluginError as exc:
                    row["hash"], row["problems"] = "-", "; ".join(filter(None, [row["problems"], str(exc)]))
        elif hashes:
            row["hash"] = "-"
        rows.append(row)
    return rows


def _path_hashes(paths: list[str]) -> int:
    for given in paths:
        p = Path(given)
        if not p.exists():
            raise UsageError(f"--hash {given}: no such plugin file or folder")
        print(f"{path_hash(p)}  {given}")
    return EXIT_OK


def run_plugins(args: argparse.Namespace) -> int:
    if args.paths:
        if not args.hash:
            raise UsageError("PATH is for --hash: covet-pipe plugins --hash PATH prints a plugin file's hash")
        return _path_hashes(args.paths)
    rows = installed_plugins(hashes=args.hash)
    if not rows:
        print(f"no installed plugin packages (no {ENTRY_POINT_GROUP!r} entry points); covet-pipe new NAME --package "
              f"writes one; {_INDEX_HINT}")
        return EXIT_OK
    header = ["NAME", "TARGET", "PACKAGE", "VERSION", "REQUIRES", "ABI", "COMPATIBLE"] + (["HASH"] if args.hash else [])
    keys = ["name", "target", "package", "version", "requires", "abi", "compatible"] + (["hash"] if args.hash else [])
    print(format_table(header, [[r[k] for k in keys] for r in rows]))
    refused = [r for r in rows if r["problems"]]
    for r in refused:
        print(f"{r['name']}: not loaded: {r['problems']}")
    if refused:
        print(f"(this is covet-pipe {running_version()}, native ABI {running_abi()})")
    return EXIT_FAILED if refused and args.check else EXIT_OK


def add_plugins(sub: Any) -> None:
    """The ``plugins`` subcommand."""
    p = sub.add_parser("plugins", help="list the installed plugin packages (entry points), without loading them",
                       description="List the covet_pipe.plugins entry points of the installed packages: version, "
                                   "the covet-pipe and ABI ranges each declares, and whether they fit this "
                                   f"covet-pipe (a package that does not fit is not loaded). {_INDEX_HINT}.")
    p.add_argument("--hash", action="store_true",
                   help="show each package's content hash, to pin with serve --pin NAME=HASH (PluginConfig "
                        "plugin_hashes); with PATH, print the hash of those plugin files or folders")
    p.add_argument("--check", action="store_true", help="exit 1 when a package does not fit this covet-pipe")
    p.add_argument("paths", nargs="*", metavar="PATH", help="plugin files or folders whose hash to print (--hash)")
    p.set_defaults(run=run_plugins)
