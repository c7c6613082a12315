"""Discovery: Python plugins from files, packages and entry points, with their manifests (``manifest.py``)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import itertools
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covet_pipe._standin import stand_in
from covet_pipe.compat import ENTRY_POINT_GROUP, check_distribution
from covet_pipe.config import PluginConfig
from covet_pipe.errors import ConfigError, PluginError, PluginLoadError
from covet_pipe.logsafe import printable
from covet_pipe.manifest import read_manifest, readable_manifest
from covet_pipe.pinning import check_pin, distribution_hash, path_hash, pin_for_distribution, pin_for_path
from covet_pipe.plugin import Plugin
from covet_pipe.registry import PluginRecord
from covet_pipe.validation import validate

log = logging.getLogger("covet_pipe.discovery")

__all__ = ["LoadReport", "discover", "discovered_by", "load_path", "forget_module", "find_plugin",
           "read_manifest", "candidates", "entry_point_records", "ENTRY_POINT_GROUP"]

_counter = itertools.count()


@dataclass
class LoadReport:
    """What ``load_plugins()`` did: names loaded, and what failed with the reason."""

    loaded: list[str] = field(default_factory=list)
    #: path or entry point -> message saying what is wrong and what to do
    failed: dict[str, str] = field(default_factory=dict)
    records: list[PluginRecord] = field(default_factory=list, repr=False)
    #: plugins to start in sandboxed helpers (the manager starts them on its loop)
    sandboxed: list[Any] = field(default_factory=list, repr=False)
    #: failed records holding the place of files that did not load (fail closed, see _standin)
    stand_ins: list[PluginRecord] = field(default_factory=list, repr=False)


def import_fresh(path: Path) -> Any:
    """Import a plugin file or package as a new module object (never a cached one)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    modname = f"covet_pipe_plugin_{path.stem.replace('-', '_').replace('.', '_')}_{digest}_{next(_counter)}"
    if path.is_dir():
        init = path / "__init__.py"
        if not init.is_file():
            raise PluginLoadError(f"{path} is a folder without __init__.py; a plugin package needs one",
                                  path=str(path))
        spec = importlib.util.spec_from_file_location(modname, init, submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"{path}: cannot be imported as Python", path=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        forget_module(module)
        raise PluginLoadError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}; fix the file and "
                              "load it again", path=str(path)) from None
    except BaseException as exc:
        forget_module(module)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
            raise
        raise PluginLoadError(f"{path}: importing it raised {type(exc).__name__}: {exc}; fix the "
                              "module-level code", path=str(path)) from None
    return module


def plugins_from(factory_owner: Any, settings: dict[str, Any], where: str) -> list[Any]:
    create = getattr(factory_owner, "create_plugin", None)
    if create is not None:
        try:
            made = create(settings)
        except Exception as exc:
            raise PluginLoadError(f"{where}: create_plugin(config) raised {type(exc).__name__}: {exc}",
                                  path=where) from None
    elif hasattr(factory_owner, "plugin"):
        made = factory_owner.plugin
    else:
        raise PluginLoadError(f"{where} defines neither create_plugin(config) nor a module-level `plugin`; "
                              "add one of them", path=where)
    made = list(made) if isinstance(made, (list, tuple)) else [made]
    for p in made:
        if not isinstance(p, Plugin):
            raise PluginLoadError(f"{where}: the factory returned {type(p).__name__}, not a covet_pipe "
                                  "Plugin; return an instance of a Plugin subclass", path=where)
    return made


def wants_sandbox(p: Path, manifest: dict[str, Any] | None, config: PluginConfig, *, host: bool = False) -> bool:
    """Whether the plugin at *p* is to run in a sandboxed helper: the one place that decides it.

    The operator's ``sandbox_enabled`` holds for every file outside ``trusted_paths``: the manifest ships with the
    plugin, so its ``sandbox = false`` cannot lift it (``sandbox = true`` may ask for a sandbox, though).
    :param host: the host asks for a sandbox (``load_plugin_from_path(..., sandbox=True)``, or a reload of
        a plugin that runs sandboxed), which nothing lifts.
    """
    if host:
        return True
    asked = (manifest or {}).get("sandbox")
    if asked is True or not config.sandbox_enabled:
        return bool(asked)
    resolved = p.resolve()
    if any(resolved == t or t in resolved.parents for t in (Path(x).resolve() for x in config.trusted_paths)):
        return bool(asked) if asked is not None else False
    if asked is False:
        log.warning("%s", printable(f"{p}: its manifest says sandbox = false, which cannot lift the operator's "
                                    "sandbox_enabled=True; it runs sandboxed. To run it in-process, add its "
                                    "file or folder to PluginConfig(trusted_paths=[...])"))
    return True


def _refuse_sandbox(where: str, manifest: dict[str, Any] | None, config: PluginConfig) -> None:
    wants = (manifest or {}).get("sandbox", config.sandbox_enabled)
    if wants:
        raise PluginLoadError(
            f"{where} is to run sandboxed (sandbox_enabled / sandbox = true), but an entry point cannot "
            "be sandboxed; it was not loaded in-process. Name the plugin's file in plugin_paths to "
            "sandbox it, or turn sandbox_enabled off if you trust the installed packages", path=where)


class SandboxRequested(Exception):
    """load_path: this plugin is to run sandboxed; ``spec`` says how (never imported here)."""

    def __init__(self, spec: Any) -> None:
        super().__init__(spec.path)
        self.spec = spec


def sandbox_spec(p: Path, config: PluginConfig, manifest: dict[str, Any] | None = None,
                 pin: tuple[str, str] | None = None) -> Any:
    """What the supervisor needs to run the plugin at *p* in a helper (*pin*: its content-hash pin)."""
    from covet_pipe.sandbox.policy import SandboxPolicy
    from covet_pipe.sandbox.supervisor import SandboxSpec
    if manifest is None:
        manifest = read_manifest(p) or {}
    settings = dict(config.plugin_settings.get(manifest.get("name") or p.stem, {}))
    settings.update(manifest.get("config", {}))
    where = str(p)
    try:
        policy = SandboxPolicy.from_config(config, manifest.get("permissions"),
                                           str(p if p.is_dir() else p.parent))
    except ConfigError as exc:
        raise PluginLoadError(f"{where}: {exc}", path=where) from None
    return SandboxSpec(path=where, policy=policy, config=settings, manifest=manifest,
                       pool_size=config.sandbox_pool_size, call_timeout=config.sandbox_call_timeout, pin=pin)


def load_path(path: str | Path, config: PluginConfig, *, sandbox: bool = False) -> list[PluginRecord]:
    """Load the plugins of one ``.py`` file or package folder as fresh modules (or a native library).

    :param sandbox: the host asks for it to run sandboxed (see :func:`wants_sandbox`).
    :raises SandboxRequested: it is to run sandboxed; nothing of it was imported.
    :raises PluginLoadError: naming the file and what to fix.
    """
    try:
        p = Path(path).expanduser()
        found = p.exists()
    except (OSError, ValueError, RuntimeError) as exc:     # too long, a NUL, "~name" of no user ...
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PluginLoadError(f"{printable(str(path), 300)}: not a usable path ({why}); give the path of a "
                              "plugin file or package folder", path=str(path)) from None
    where = str(p)
    if not found:
        raise PluginLoadError(f"{where} does not exist", path=where)
    pin = None
    if config.plugin_hashes:        # before anything of it is read as code
        pin = pin_for_path(config.plugin_hashes, p, (readable_manifest(p) or {}).get("name"))
        check_pin(pin, path_hash(p) if pin else "", where)
    if p.suffix == ".so":
        return [_native_record(p, config, sandbox)]
    if p.is_file() and p.suffix != ".py":
        raise PluginLoadError(f"{where} is neither a .py file nor a package folder", path=where)
    manifest = read_manifest(p)
    if wants_sandbox(p, manifest, config, host=sandbox):
        # Untrusted: never imported in the host. The manager starts it in a helper.
        # A restarted helper reads the file again: the supervisor checks the pin before each start.
        raise SandboxRequested(sandbox_spec(p, config, manifest or {}, pin))
    module = import_fresh(p)
    base_name = (manifest or {}).get("name")
    settings = dict(config.plugin_settings.get(base_name or p.stem, {}))
    settings.update((manifest or {}).get("config", {}))
    records = []
    try:
        for plugin in plugins_from(module, settings, where):
            if manifest:
                _apply_manifest(plugin, manifest, where)
            try:
                record = validate(plugin, priority=(manifest or {}).get("priority"),
                                  failure_policy=(manifest or {}).get("failure_policy"),
                                  source="file", path=where, config=settings)
            except PluginError as exc:
                raise PluginLoadError(str(exc), plugin_name=exc.plugin_name, path=where) from None
            record.module = module
            records.append(record)
    except PluginError:
        forget_module(module)
        raise
    return records


def forget_module(module: Any) -> None:
    """Drop a module :func:`import_fresh` made (and its package's submodules) from ``sys.modules``.

    For a plugin that is gone (unloaded, replaced by a reload, refused): its modules go with it
    instead of piling up reload after reload. None does nothing.
    """
    if module is None:
        return
    name = module.__name__
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def _native_record(p: Path, config: PluginConfig, sandbox: bool) -> PluginRecord:
    """A C or Cython plugin library, with its manifest (``x.covet-plugin.toml`` for ``x.so``)."""
    from covet_pipe.native import load_native
    where = str(p)
    manifest = read_manifest(p)
    if wants_sandbox(p, manifest, config, host=sandbox):
        if sandbox:
            raise PluginLoadError(f"{where} was to be loaded sandboxed (sandbox=True), but native plugins run "
                                  "in-process and cannot be sandboxed; load it without sandbox=True if you "
                                  "trust this library", path=where)
        raise PluginLoadError(f"{where} is to run sandboxed (sandbox_enabled / sandbox = true), but native "
                              "plugins run in-process and cannot be sandboxed; if you trust this library, add "
                              "it or its folder to PluginConfig(trusted_paths=[...])", path=where)
    plugin = load_native(p)
    if manifest:
        _apply_manifest(plugin, manifest, where)
    settings = dict(config.plugin_settings.get(plugin.name, {}))
    settings.update((manifest or {}).get("config", {}))
    try:
        return validate(plugin, priority=(manifest or {}).get("priority"),
                        failure_policy=(manifest or {}).get("failure_policy"),
                        source="native", path=where, config=settings)
    except PluginError as exc:
        raise PluginLoadError(str(exc), plugin_name=exc.plugin_name, path=where) from None


def _apply_manifest(plugin: Any, manifest: dict[str, Any], where: str) -> None:
    for key in ("name", "version"):
        if key not in manifest:
            continue
        have = getattr(plugin, key, None)
        if have is None:
            setattr(plugin, key, manifest[key])
        elif str(have) != manifest[key]:
            raise PluginLoadError(f"{where}: the manifest says {key} = {manifest[key]!r} but the plugin "
                                  f"says {have!r}; make them agree or drop it from the manifest", path=where)
    if "dependencies" in manifest:
        plugin.dependencies = list(manifest["dependencies"])
    if "protocols" in manifest:
        plugin.protocols = frozenset(manifest["protocols"])


def candidates(base: Path) -> list[Path]:
    """What discovery loads from *base*: the plugin itself, or a folder's plugin files and packages."""
    if base.is_file() or (base.is_dir() and (base / "__init__.py").is_file()):
        return [base]
    out = []
    for child in sorted(base.iterdir()):
        if child.name.startswith(("_", ".")):
            continue
        if child.is_file() and child.suffix in (".py", ".so"):
            out.append(child)
        elif child.is_dir() and (child / "__init__.py").is_file():
            out.append(child)
    return out


def entry_point_records(config: PluginConfig, report: LoadReport, only: str | None = None) -> None:
    """Load the plugins of the installed entry points (or only the one named *only*) into *report*."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if only is not None and ep.name != only:
            continue
        where = f"entry point {ep.name} = {ep.value}"
        if ep.dist is not None:
            fit = check_distribution(ep.dist)    # before its code runs: the ranges its metadata declares
            if not fit.ok:
                report.failed[where] = f"{where}: not loaded: {'; '.join(fit.problems)}"
                continue
        pin = pin_for_distribution(config.plugin_hashes, ep.name, ep.dist)
        if pin is not None:
            try:
                check_pin(pin, distribution_hash(ep.dist) if ep.dist is not None else "sha256:-", where)
            except PluginError as exc:
                # pinned, the operator relies on it: it fails closed as a plugin file does (a 503 in its place,
                # unless its failure policy is open)
                report.failed[where] = str(exc)
                folder = ep.dist.locate_file(ep.module.split(".")[0]) if ep.dist is not None else ep.name
                report.stand_ins.append(stand_in(str(folder), str(exc), config, {"name": ep.name}))
                continue
        try:
            _refuse_sandbox(where, None, config)
            target = ep.load()
        except PluginError as exc:
            report.failed[where] = str(exc)
            continue
        except Exception as exc:
            report.failed[where] = f"{where}: loading it raised {type(exc).__name__}: {exc}"
            continue
        settings = dict(config.plugin_settings.get(ep.name, {}))
        try:
            if isinstance(target, type) and issubclass(target, Plugin):
                plugins = [target()]
            elif isinstance(target, Plugin):
                plugins = [target]
            elif callable(target):
                plugins = plugins_from(type("ep", (), {"create_plugin": staticmethod(target)}), settings, where)
            else:
                raise PluginLoadError(f"{where} names {type(target).__name__}; name a create_plugin(config) "
                                      "factory or a Plugin class", path=where)
            for plugin in plugins:
                report.records.append(validate(plugin, source=where, config=settings))
        except PluginError as exc:
            report.failed[where] = str(exc)
        except Exception as exc:
            report.failed[where] = f"{where}: creating the plugin raised {type(exc).__name__}: {exc}"


def discover(config: PluginConfig, registry: Any = None) -> LoadReport:
    """Load every plugin in ``plugin_paths`` and the entry points; a failure never stops the rest."""
    report = LoadReport()
    # by real path: the same folder given twice (./plugins and /abs/plugins) loads once
    known = {os.path.realpath(r.path) for r in registry.records() if r.path} if registry is not None else set()
    for base in config.plugin_paths:
        root = Path(base)
        if not root.exists():
            report.failed[base] = (f"plugin path {base} does not exist; create it or remove it from "
                                   "PluginConfig.plugin_paths")
            continue
        for cand in candidates(root):
            real = os.path.realpath(cand)
            if real in known:
                continue
            known.add(real)
            try:
                report.records.extend(load_path(cand, config))
            except SandboxRequested as req:
                report.sandboxed.append(req.spec)
            except PluginError as exc:
                report.failed[str(cand)] = str(exc)
                report.stand_ins.append(stand_in(cand, str(exc), config, readable_manifest(cand)))
    if config.entry_points:
        known_sources = {r.source for r in registry.records()} if registry is not None else set()
        before = len(report.records)
        entry_point_records(config, report)
        report.records[before:] = [r for r in report.records[before:] if r.source not in known_sources]
    return report


def discovered_by(record: PluginRecord, config: PluginConfig) -> bool:
    """Whether *record* is what :func:`discover` finds: a plugin under ``plugin_paths``, or of an entry point."""
    if not record.path:
        return record.source.startswith("entry point")
    p = Path(record.path).resolve()
    return any(p == b or b in p.parents for b in (Path(x).resolve() for x in config.plugin_paths))


def find_plugin(name: str, config: PluginConfig) -> PluginRecord | None:
    """Look for a plugin called *name* (auto_resolve_dependencies): files, then entry points."""
    for base in config.plugin_paths:
        root = Path(base)
        for cand in (root / f"{name}.py", root / name):
            if cand.exists():
                try:
                    for record in load_path(cand, config):
                        if record.name == name:
                            return record
                except (PluginError, SandboxRequested):
                    continue
    report = LoadReport()
    entry_point_records(config, report, only=name)
    for record in report.records:
        if record.name == name:
            return record
    return None
