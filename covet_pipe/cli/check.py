"""``covet-pipe check PATH``: validate a plugin file, folder or installed package without serving it.

What is checked, each problem printed with what to do (exit 1 when there is one, else 0):

- the manifest (:func:`covet_pipe.manifest.read_manifest`: TOML, fields, types, unknown fields);
- the load, in a throwaway process (:mod:`covet_pipe.cli.check_probe`): a Python plugin is imported, a native
  one goes through the loader's checks (ELF header, entry symbol, ABI version, descriptor), a sandboxed one is
  started in a confined helper as the server would start it;
- dependencies and their version constraints, against the plugins checked together (a plugin folder) and the
  installed entry points; dependency cycles;
- sandbox eligibility (a native plugin cannot be sandboxed) and the effective sandbox policy.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from covet_pipe._graph import start_order
from covet_pipe.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from covet_pipe.config import PluginConfig
from covet_pipe.discovery import ENTRY_POINT_GROUP, candidates, sandbox_spec, wants_sandbox
from covet_pipe.errors import PluginError
from covet_pipe.manifest import read_manifest

__all__ = ["Report", "add_check", "check_path", "native_problem", "run_check"]

#: seconds for the throwaway process (a sandboxed helper starts in it); never a speed check
PROBE_TIMEOUT = 120.0


class Report:
    """What ``check`` found: problems (each says what to do) and notes (what was found)."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []

    def problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)


def _probe(request: dict[str, Any], report: Report) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "covet_pipe.cli.check_probe", json.dumps(request)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        report.problem(f"loading took longer than {PROBE_TIMEOUT:.0f} s and was stopped; look for module-level "
                       "code that blocks (a network call, a loop) and move it into a hook")
        return []
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        report.problem(f"loading it killed the checking process ({how}: {last}); a native plugin's library "
                       "code (a constructor) or a module-level exit did this: fix it and check again")
        return []
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _installed(target: str) -> list[str]:
    """The entry-point names that an installed distribution (or entry point) called *target* provides."""
    eps = _entry_points()
    if target in eps:
        return [target]
    want = target.lower().replace("_", "-")
    return sorted(n for n, ep in eps.items()
                  if ep.dist is not None and ep.dist.name.lower().replace("_", "-") == want)


def _dependencies(plugins: list[dict[str, Any]], report: Report) -> None:
    have = {p["name"]: p["version"] for p in plugins}
    installed = _entry_points()
    edges: dict[str, list[str]] = {}
    for p in plugins:
        edges[p["name"]] = []
        for spec in p["dependencies"]:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                report.problem(f"plugin {p['name']!r}: dependency {spec!r} is not a valid constraint; write it "
                               "like \"jwt_handler>=1.0,<2\" (a plugin name and PEP 440 specifiers)")
                continue
            edges[p["name"]].append(req.name)
            if req.name in have:
                if req.specifier and not req.specifier.contains(have[req.name], prereleases=True):
                    report.problem(f"plugin {p['name']!r} needs {spec!r}, but {req.name} {have[req.name]} is what "
                                   f"there is; install a {req.name} that satisfies {str(req.specifier)!r} or relax "
                                   f"the constraint in {p['name']}'s dependencies")
            elif req.name in installed:
                report.notes.append(f"{p['name']} needs {spec}: the installed entry point {req.name} provides it "
                                    "(its version is checked when it is served)")
            else:
                known = ", ".join(sorted(set(have) | set(installed))) or "none"
                report.problem(f"plugin {p['name']!r} needs {spec!r}, which is neither checked here nor installed "
                               f"(found: {known}); put {req.name} in the same plugin folder, install it, or drop "
                               "the dependency")
    _, cycles = start_order(edges)
    for cyc in cycles:
        report.problem(f"dependency cycle: {' -> '.join(cyc)}; remove one of these dependencies (or serve with "
                       "allow_circular_dependencies=True)")


def _sandbox(path: Path, manifest: dict[str, Any] | None, report: Report) -> bool:
    """Whether *path* runs sandboxed; its effective policy goes to the notes."""
    config = PluginConfig()
    if not wants_sandbox(path, manifest, config):
        return False
    if path.suffix == ".so":
        report.problem(f"{path}: its manifest says sandbox = true, but a native plugin runs in-process and "
                       "cannot be sandboxed; drop `sandbox = true`, or write the plugin in Python")
        return False
    try:
        policy = sandbox_spec(path, config, manifest or {}).policy.as_dict()
    except PluginError as exc:
        report.problem(str(exc))
        return False
    shown = {k: policy[k] for k in ("read_paths", "write_paths", "networks", "memory_limit", "cpu_limit",
                                    "allowed_syscalls", "risks") if k in policy}
    report.notes.append(f"{path.name} runs sandboxed; effective policy: {json.dumps(shown)}")
    return True


def native_problem(path: Path) -> str | None:
    """What is wrong with the native library at *path* (the loader's checks, in a throwaway process), or None."""
    report = Report()
    results = _probe({"paths": [str(path)]}, report)
    found = next((str(r["error"]) for r in results if r["error"]), None)
    return found if found is not None else next(iter(report.problems), None)


def check_path(target: str) -> tuple[Report, list[dict[str, Any]]]:
    """Check what *target* names (a plugin file, a plugin folder, an installed package); the report and plugins."""
    report = Report()
    path = Path(target)
    paths: list[Path] = []
    entry_points: list[str] = []
    if path.exists():
        if path.suffix in (".c", ".pyx"):
            report.problem(f"{path} is a native plugin's source; build it first (covet-pipe build {path}), "
                           f"then check the library: covet-pipe check {path.with_suffix('.so')}")
            return report, []
        if path.is_file() and path.suffix not in (".py", ".so"):
            report.problem(f"{path} is neither a .py file, a .so library nor a plugin folder; give one of those")
            return report, []
        paths = candidates(path)
        if not paths:
            report.problem(f"{path} holds no plugin (.py, .so or a package folder); covet-pipe new writes one")
    else:
        entry_points = _installed(target)
        if not entry_points:
            report.problem(f"{target}: no such file or folder, and no installed package or entry point of that name "
                           f"in the {ENTRY_POINT_GROUP!r} group; give a plugin's path, or pip install the package")
            return report, []
    sandboxed = []
    probed = []
    for p in paths:
        try:
            manifest = read_manifest(p)
        except PluginError as exc:
            report.problem(str(exc))
            continue
        if _sandbox(p, manifest, report):
            sandboxed.append(str(p))
        probed.append(str(p))
    plugins: list[dict[str, Any]] = []
    if probed or entry_points:
        for result in _probe({"paths": probed, "sandboxed": sandboxed, "entry_points": entry_points}, report):
            if result["error"]:
                report.problem(result["error"])
            plugins.extend(result["plugins"])
    _dependencies(plugins, report)
    return report, plugins


def run_check(args: argparse.Namespace) -> int:
    if not args.path:
        raise UsageError("give the path of a plugin file or folder, or an installed plugin package's name")
    report, plugins = check_path(args.path)
    for p in plugins:
        abi = f", ABI {p['abi']}" if p["abi"] else ""
        print(f"ok: {p['name']} {p['version']} ({p['kind']}{abi})")
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        n = len(report.problems)
        print(f"{args.path}: {n} problem{'s' if n > 1 else ''}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.path}: no problems")
    return EXIT_OK


def add_check(sub: Any) -> None:
    """The ``check`` subcommand."""
    check = sub.add_parser(
        "check", help="validate a plugin (file, folder or installed package) without serving it",
        description="Check a plugin's manifest, load it in a throwaway process as the server would (a sandboxed "
                    "one in its confined helper), check its dependencies and its sandbox policy; every problem "
                    "says what to do. Exit 0: no problems; 1: a problem.",
    )
    check.add_argument("path", help="a plugin .py, .so or package folder, a plugin folder, or an installed "
                                    "package's (or entry point's) name")
    check.set_defaults(run=run_check)
