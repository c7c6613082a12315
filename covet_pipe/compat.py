"""Whether an installed plugin package fits the running covet-pipe: the ranges its metadata declares.

A plugin package declares two ranges, both read without importing it:

- the covet-pipe releases it works with: its ``Requires-Dist`` on ``covet-pipe`` (``dependencies =
  ["covet-pipe>=0.1,<0.2"]`` in its pyproject);
- the native ABI it was built for: ``abi = ">=1.1,<2"`` in the ``covet-plugin.toml`` manifest its package
  ships (a Python-only plugin leaves it out: it then fits every ABI).

Discovery refuses a package whose ranges leave out what is running (so a plain ``pip install`` is
protected as well as ``covet-pipe install``), and ``covet-pipe plugins`` shows the verdict.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from covet_pipe.errors import PluginError
from covet_pipe.manifest import MANIFEST, read_manifest

__all__ = ["Compatibility", "check_distribution", "running_abi", "running_version", "plugin_distributions"]

ENTRY_POINT_GROUP = "covet_pipe.plugins"


def running_version() -> str:
    """The running covet-pipe's version."""
    from covet_pipe import __version__
    return str(__version__)


def running_abi() -> str:
    """The running covet-pipe's native ABI version, ``MAJOR.MINOR``."""
    from covet_pipe._core import ABI_MAJOR, ABI_MINOR
    return f"{ABI_MAJOR}.{ABI_MINOR}"


@dataclass
class Compatibility:
    """What a plugin package declares, and what of it does not match the running covet-pipe."""

    package: str
    version: str
    #: its covet-pipe requirement (``covet-pipe>=0.1``), or "-" when it declares none
    requires: str = "-"
    #: its native ABI range (``>=1.1,<2``), or "-" when it declares none
    abi: str = "-"
    #: each mismatch, with what to do; empty when it fits
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def plugin_distributions() -> list[importlib.metadata.Distribution]:
    """The installed distributions that provide a ``covet_pipe.plugins`` entry point, each once."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None:
            seen.setdefault(canonicalize_name(ep.dist.name), ep.dist)
    return [seen[k] for k in sorted(seen)]


def package_manifest(dist: importlib.metadata.Distribution) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest a plugin package ships (``PKG/covet-plugin.toml`` of an entry point's package).

    :returns: the manifest (None when there is none) and, when it cannot be read, why.
    """
    tops = {ep.module.split(".")[0] for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP}
    for top in sorted(tops):
        folder = Path(str(dist.locate_file(top)))
        if (folder / MANIFEST).is_file():
            try:
                return read_manifest(folder), None
            except PluginError as exc:
                return None, str(exc)
    return None, None


def check_distribution(dist: importlib.metadata.Distribution) -> Compatibility:
    """The package's declared covet-pipe and ABI ranges against the running ones."""
    name, version = dist.metadata["Name"] or "?", dist.version
    found = Compatibility(name, version)
    have = running_version()
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if canonicalize_name(req.name) != "covet-pipe" or (req.marker is not None and not req.marker.evaluate()):
            continue
        found.requires = f"covet-pipe{req.specifier}" if str(req.specifier) else "covet-pipe"
        if not req.specifier.contains(Version(have), prereleases=True):
            found.problems.append(
                f"{name} {version} requires covet-pipe{req.specifier}, but this is covet-pipe {have}; install a "
                f"release of {name} made for covet-pipe {have} (pip install '{name}' picks one when there is), or "
                f"the covet-pipe it asks for")
    manifest, broken = package_manifest(dist)
    if broken is not None:
        found.problems.append(f"{name} {version}: its manifest cannot be read: {broken}; reinstall the package "
                              "or tell its author")
    declared = (manifest or {}).get("abi")
    if declared is not None:
        found.abi = declared
        abi = running_abi()
        try:
            fits = SpecifierSet(declared).contains(Version(abi), prereleases=True)
        except InvalidSpecifier:
            fits = False
            found.problems.append(f"{name} {version}: its manifest's abi = {declared!r} is not a version range "
                                  "such as '>=1.1,<2'; tell its author")
        else:
            if not fits:
                found.problems.append(
                    f"{name} {version} is built for the native ABI {declared}, but this covet-pipe has ABI {abi}; "
                    f"install a build of {name} for ABI {abi}, or a covet-pipe whose ABI is in {declared}")
    return found
