"""A sandboxed plugin shipped as a package: the entry point's plugin starts the confined helper when it starts.

An entry point is imported by the server, so the plugin's own code cannot be what it names. The package
keeps that code as data (``NAME/sandboxed/NAME.py`` and its manifest, never imported by the server), and
its entry point's ``create_plugin`` returns a :class:`PackagedSandbox`: a hook-style middleware whose
``initialize`` starts the helper on the serving loop and whose hooks hand each call to the helper's proxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from covet_pipe.errors import PluginLoadError
from covet_pipe.plugin import MiddlewarePlugin

__all__ = ["PackagedSandbox", "sandboxed_from_package"]


class PackagedSandbox(MiddlewarePlugin):
    """Stands for the sandboxed plugin at ``source``: named and versioned by its manifest, run in its helper."""

    style = "hook"
    #: a packaged sandboxed plugin sees no request body (its helper's report comes after the chain is built)
    needs_body = False

    def __init__(self, source: Path, manifest: dict[str, Any]) -> None:
        self.source = source
        self.manifest = manifest
        self.name = str(manifest["name"])
        self.version = str(manifest.get("version", "0.0.0"))
        if "priority" in manifest:
            self.priority = int(manifest["priority"])
        self._proxy: Any = None

    async def initialize(self, ctx: Any) -> None:
        from covet_pipe.config import PluginConfig
        from covet_pipe.discovery import sandbox_spec
        from covet_pipe.sandbox.proxy import start_sandboxed
        if self._proxy is None:
            self._proxy = await start_sandboxed(sandbox_spec(self.source, PluginConfig(), self.manifest))
        await self._proxy.initialize(ctx)

    async def shutdown(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            await proxy.shutdown()

    async def process_request(self, request: Any, ctx: Any) -> Any:
        hook = getattr(self._proxy, "process_request", None)
        return None if hook is None else await hook(request, ctx)

    async def process_response(self, response: Any, ctx: Any) -> None:
        hook = getattr(self._proxy, "process_response", None)
        if hook is not None:
            await hook(response, ctx)

    def metadata(self) -> dict[str, Any]:
        if self._proxy is None:
            return {"description": f"sandboxed plugin from {self.source} (not started)", "sandboxed": True}
        meta: dict[str, Any] = self._proxy.metadata()
        return meta


def sandboxed_from_package(package_file: str, name: str) -> PackagedSandbox:
    """The plugin of the package whose ``__init__.py`` is *package_file*: ``sandboxed/NAME.py`` beside it.

    :raises PluginLoadError: the file or its manifest is missing, or the manifest does not ask for the sandbox.
    """
    from covet_pipe.discovery import read_manifest
    source = Path(package_file).resolve().parent / "sandboxed" / f"{name}.py"
    if not source.is_file():
        raise PluginLoadError(f"{source} is missing: the package's sandboxed plugin lives there (with "
                              f"{name}.covet-plugin.toml beside it); reinstall the package", path=str(source))
    manifest = read_manifest(source) or {}
    if manifest.get("sandbox") is not True or "name" not in manifest:
        raise PluginLoadError(f"{source}: its manifest {name}.covet-plugin.toml must say name = {name!r} and "
                              "sandbox = true (it runs in a helper, never in the server)", path=str(source))
    return PackagedSandbox(source, manifest)
