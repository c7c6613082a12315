"""``covet-pipe plugins``: the installed plugin packages (the ``covet_pipe.plugins`` entry points), not loaded.

One row per entry point: its name, what it names, and the distribution that provides it with its version
and the covet-pipe it requires. ``covet-pipe check NAME`` loads one in a throwaway process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any

from covet_pipe.cli.errors import EXIT_OK
from covet_pipe.cli.tables import format_table
from covet_pipe.discovery import ENTRY_POINT_GROUP

__all__ = ["add_plugins", "installed_plugins", "run_plugins"]


def installed_plugins() -> list[dict[str, str]]:
    """Every entry point of the plugin group, with its distribution, version and covet-pipe requirement."""
    rows = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist
        requires = [r for r in (dist.requires or []) if r.replace("_", "-").lower().startswith("covet-pipe")] \
            if dist is not None else []
        rows.append({"name": ep.name, "target": ep.value, "package": dist.name if dist is not None else "-",
                     "version": dist.version if dist is not None else "-",
                     "requires": ", ".join(requires) or "-"})
    return rows


def run_plugins(args: argparse.Namespace) -> int:
    rows = installed_plugins()
    if not rows:
        print(f"no installed plugin packages (no {ENTRY_POINT_GROUP!r} entry points); covet-pipe new NAME --package "
              "writes one")
        return EXIT_OK
    print(format_table(["NAME", "TARGET", "PACKAGE", "VERSION", "REQUIRES"],
                [[r["name"], r["target"], r["package"], r["version"], r["requires"]] for r in rows]))
    return EXIT_OK


def add_plugins(sub: Any) -> None:
    """The ``plugins`` subcommand."""
    p = sub.add_parser("plugins", help="list the installed plugin packages (entry points), without loading them",
                       description="List the covet_pipe.plugins entry points of the installed packages.")
    p.set_defaults(run=run_plugins)
