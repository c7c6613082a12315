"""Hot reload on change: watch the plugin paths and reload a plugin when its content changes.

``PluginWatcher(manager, registry)`` runs ``watchfiles.awatch`` on the server's event loop over the
folders of ``plugin_paths`` and of plugins loaded by path (the registry's records). A change is mapped to the plugin whose file or
package it touches; when the content hash differs from the last one seen, the plugin is reloaded
(``manager.reload_plugin``), or, for a new file in a plugin folder, loaded. A deleted file
unloads its plugins (refused, and reported, while others depend on them); a renamed one reloads
from its new path. A plugin folder created after start is picked up within about a second. A
failed reload is logged and kept in ``reload_errors`` (health shows it as
``plugins[name]["reload_error"]``) while the old version serves on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Protocol

from covet_pipe.logsafe import printable
from covet_pipe.manifest import manifest_path
from covet_pipe.registry import Registry

__all__ = ["PluginWatcher", "PluginActions", "content_hash"]

log = logging.getLogger("covet_pipe.reload")


def content_hash(unit: Path) -> str | None:
    """sha256 of a plugin file (with its manifest) or of every file of a package; None if gone."""
    h = hashlib.sha256()
    try:
        if unit.is_dir():
            for f in sorted(unit.rglob("*")):
                if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc":
                    continue
                h.update(str(f.relative_to(unit)).encode() + b"\0")
                h.update(f.read_bytes() + b"\0")
        elif unit.is_file():
            h.update(unit.read_bytes() + b"\0")
            manifest = manifest_path(unit)
            if manifest.is_file():
                h.update(manifest.read_bytes())
        else:
            return None
    except OSError:
        return None
    return h.hexdigest()


class PluginActions(Protocol):
    """What the watcher asks of a PluginManager when files change."""

    async def reload_plugin(self, name: str, *, path: str | None = None) -> None: ...

    async def unload_plugin(self, name: str, *, cascade: bool = False) -> list[str]: ...

    async def load_plugin_from_path(self, path: str, *, sandbox: bool = False) -> list[str]: ...


class PluginWatcher:
    """Watches plugin files and reloads changed plugins on the running loop.

    :param manager: what reloads, unloads and loads the plugins (a PluginManager).
    :param registry: its records: which files are plugins, and ``config.plugin_paths``.
    :param debounce_ms: the longest time changes are grouped before they are handled.
    """

    def __init__(self, manager: PluginActions, registry: Registry, *, debounce_ms: int = 150,
                 step_ms: int = 50) -> None:
        self.manager = manager
        self.registry = registry
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        #: plugin unit (file or package folder) -> content hash last seen
        self._hashes: dict[str, str | None] = {}
        #: path of a new file that failed to load -> why
        self.errors: dict[str, str] = {}
        #: plugin name -> why its last hot reload (or the unload after its file was deleted) failed;
        #: the next good one clears it
        self.reload_errors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._roots: list[Path] = []
        #: reloads and loads done (for tests and health)
        self.reloads = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def forget(self, name: str) -> None:
        """Clear the reload error of plugin *name* (it reloaded, or it is gone)."""
        self.reload_errors.pop(name, None)

    # -- what to watch -------------------------------------------------------

    def _plugin_folders(self) -> list[Path]:
        """plugin_paths entries that are plain folders (a new file there is a new plugin)."""
        out = []
        for base in self.registry.config.plugin_paths:
            p = Path(base)
            if p.is_dir() and not (p / "__init__.py").is_file():
                out.append(p.resolve())
        return out

    def _units(self) -> dict[Path, list[str]]:
        """Plugin file or package -> names of the plugins loaded from it."""
        units: dict[Path, list[str]] = {}
        for record in self.registry.records():
            if record.path:
                units.setdefault(Path(record.path).resolve(), []).append(record.name)
        return units

    def _compute_roots(self) -> list[Path]:
        dirs = set(self._plugin_folders())
        for base in self.registry.config.plugin_paths:
            p = Path(base)
            if p.is_file() or (p.is_dir() and (p / "__init__.py").is_file()):
                dirs.add(p.resolve().parent)
        for unit in self._units():
            dirs.add(unit.parent)
        dirs = {d for d in dirs if d.is_dir()}
        # watch recursively, so drop folders inside another watched folder
        return sorted(d for d in dirs if not any(o != d and o in d.parents for o in dirs))

    def _unit_of(self, changed: Path, units: dict[Path, list[str]]) -> Path | None:
        """The plugin file or package a changed path belongs to (known or new), or None."""
        for unit in units:
            if changed == unit or unit in changed.parents:
                return unit
            if not unit.is_dir() and changed == manifest_path(unit):
                return unit
        for folder in self._plugin_folders():
            if changed.parent == folder:
                if changed.name.startswith(("_", ".")) or changed.suffix not in (".py", ".so"):
                    return None
                return changed
            if folder in changed.parents:
                top = folder / changed.relative_to(folder).parts[0]
                if not top.name.startswith(("_", ".")) and (top / "__init__.py").is_file():
                    return top
        return None

    def _baseline(self) -> None:
        units = list(self._units())
        for folder in self._plugin_folders():
            for child in folder.iterdir():
                if child.name.startswith(("_", ".")):
                    continue
                if (child.is_file() and child.suffix in (".py", ".so")) or (child / "__init__.py").is_file():
                    units.append(child.resolve())
        for unit in units:
            self._hashes.setdefault(str(unit), content_hash(unit))

    # -- start and stop -------------------------------------------------------

    def start(self) -> None:
        """Start watching on the running loop (idempotent)."""
        if self.running:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._baseline()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="covet-pipe plugin watcher")

    def refresh(self) -> None:
        """Watch again with the current folders (a plugin was loaded from a new place)."""
        if self.running and self._wake is not None and self._compute_roots() != self._roots:
            self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop watching and wait for the watcher (a reload under way finishes first, bounded)."""
        task, self._task = self._task, None
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if task is None or task.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        except Exception as exc:
            log.error("the plugin watcher ended with %s: %s", type(exc).__name__, printable(str(exc)))

    # -- the loop -------------------------------------------------------------

    async def _run(self) -> None:
        import watchfiles
        assert self._wake is not None
        while not self._stopping:
            roots = self._compute_roots()
            if roots != self._roots and self._roots:
                await self._scan_new()      # a plugin folder appeared: what is in it already loads
            self._roots = roots
            self._wake.clear()
            if not self._roots:
                try:    # nothing to watch yet: look again for plugin folders created meanwhile
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                self._roots = [Path("/nonexistent")]   # so the next round scans what appeared
                continue
            log.info("watching plugin folders %s for changes", printable(", ".join(map(str, self._roots))))
            try:
                async for changes in watchfiles.awatch(*self._roots, stop_event=self._wake,
                                                       debounce=self.debounce_ms, step=self.step_ms,
                                                       rust_timeout=1000, yield_on_timeout=True):
                    if changes:
                        await self._handle({Path(p) for _, p in changes})
                    if self._stopping:
                        break
                    if self._compute_roots() != self._roots:
                        break       # a plugin folder was created or removed
            except Exception as exc:  # a folder vanished, inotify limits ...: retry after a pause
                log.error("the plugin watcher failed (%s: %s); watching again in 1 s", type(exc).__name__,
                          printable(str(exc)))
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass

    async def _scan_new(self) -> None:
        """Load the plugin files and packages in plugin folders that were never seen."""
        for folder in self._plugin_folders():
            for child in sorted(folder.iterdir()):
                unit = child.resolve()
                if str(unit) in self._hashes or child.name.startswith(("_", ".")):
                    continue
                if (child.is_file() and child.suffix in (".py", ".so")) or (child / "__init__.py").is_file():
                    self._hashes[str(unit)] = await asyncio.to_thread(content_hash, unit)
                    await self._load(unit)

    async def _handle(self, changed: set[Path]) -> None:
        units = self._units()
        todo: list[Path] = []
        for path in sorted(changed):
            unit = self._unit_of(path.resolve() if path.exists() else path, units)
            if unit is not None and unit not in todo:
                todo.append(unit)
        gone: list[tuple[Path, list[str]]] = []
        fresh: list[Path] = []
        for unit in todo:
            if self._stopping:
                return
            digest = await asyncio.to_thread(content_hash, unit)
            if digest is None:      # deleted (or renamed away)
                self._hashes.pop(str(unit), None)
                if units.get(unit):
                    gone.append((unit, units[unit]))
                continue
            if self._hashes.get(str(unit)) == digest:
                continue  # touched, or written with the same content
            self._hashes[str(unit)] = digest
            names = units.get(unit)
            if names:
                for name in names:
                    await self._reload(name)
            else:
                fresh.append(unit)
        if len(gone) == 1 and len(fresh) == 1:
            # a rename: the plugin reloads from its new path, with no moment without it
            (old_unit, names), new_unit = gone[0], fresh[0]
            results = [await self._reload(name, path=new_unit) for name in names]
            if all(results):
                log.info("plugin file %s renamed to %s: %s reloaded from there", printable(str(old_unit)),
                         printable(str(new_unit)), ", ".join(names))
                return
        for unit, names in gone:
            await self._unload(unit, names)
        for unit in fresh:
            await self._load(unit)

    async def _unload(self, unit: Path, names: list[str]) -> None:
        for name in names:
            record = self.registry.get(name)
            if record is None or record.path is None or Path(record.path).resolve() != unit:
                continue        # already reloaded from elsewhere
            try:
                await self.manager.unload_plugin(name)
            except Exception as exc:
                self.reload_errors[name] = f"{unit} was deleted, but the plugin keeps serving: {exc}"
                log.error("plugin file %s deleted; plugin %r not unloaded: %s", printable(str(unit)), name,
                          printable(str(exc)))
            else:
                self.forget(name)
                self.reloads += 1
                log.info("plugin file %s deleted: plugin %r unloaded", printable(str(unit)), name)

    async def _reload(self, name: str, path: Path | None = None) -> bool:
        try:
            await self.manager.reload_plugin(name, path=None if path is None else str(path))
        except Exception as exc:
            if path is not None:
                return False        # not a rename of this plugin: the caller unloads and loads
            self.reload_errors[name] = str(exc)
            log.error("hot reload of plugin %r: %s", name, printable(str(exc)))
            return False
        self.forget(name)
        self.reloads += 1
        return True

    async def _load(self, unit: Path) -> None:
        try:
            names = await self.manager.load_plugin_from_path(str(unit))
        except Exception as exc:
            self.errors[str(unit)] = str(exc)
            log.error("could not load new plugin file %s: %s", printable(str(unit)), printable(str(exc)))
        else:
            self.errors.pop(str(unit), None)
            self.reloads += 1
            log.info("loaded new plugin(s) %s from %s", ", ".join(names), printable(str(unit)))
