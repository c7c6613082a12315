"""The throwaway process of ``covet-pipe check``: load plugins as the server would, print what loaded as JSON.

``python -m covet_pipe.cli.check_probe REQUEST_JSON`` where the request is ``{"paths": [...], "sandboxed":
[...], "entry_points": [...]}``. A plain Python or native plugin is loaded with :func:`covet_pipe.discovery.load_path`
(its module code runs here, never in the checking process); a sandboxed one is started in a confined helper
by the sandbox supervisor, exactly as the server does, and stopped again. One JSON document goes to stdout:
``{"results": [{"where", "error", "plugins": [{"name", "version", "dependencies", "kind", "abi"}]}]}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["probe"]


def _described(plugin: Any, kind: str) -> dict[str, Any]:
    abi = getattr(plugin, "abi", None)
    return {"name": str(getattr(plugin, "name", None)), "version": str(getattr(plugin, "version", None)),
            "dependencies": [str(d) for d in (getattr(plugin, "dependencies", None) or ())], "kind": kind,
            "abi": f"{abi[0]}.{abi[1]}" if abi else None}


def _kind(plugin: Any) -> str:
    """What a loaded plugin is: sandboxed (a package's), or what it is written in (c, cython, python)."""
    from covet_pipe.sandbox.packaged import PackagedSandbox
    if isinstance(plugin, PackagedSandbox):
        return "sandboxed"
    return str(getattr(plugin, "language", None) or "python")


async def _sandboxed(path: str) -> dict[str, Any]:
    from covet_pipe.config import PluginConfig
    from covet_pipe.discovery import sandbox_spec
    from covet_pipe.sandbox.supervisor import Supervisor
    spec = sandbox_spec(Path(path), PluginConfig())
    sup = Supervisor(spec, Path(path).stem)
    meta = await sup.start()
    try:
        return {"name": str(meta.get("name")), "version": str(meta.get("version")),
                "dependencies": [str(d) for d in meta.get("dependencies") or ()], "kind": "sandboxed",
                "abi": None}
    finally:
        await sup.shutdown(call_plugin=False)


def _one(where: str, sandboxed: bool) -> dict[str, Any]:
    from covet_pipe.config import PluginConfig
    from covet_pipe.discovery import load_path
    from covet_pipe.errors import PluginError
    try:
        if sandboxed:
            plugins = [asyncio.run(_sandboxed(where))]
        else:
            records = load_path(where, PluginConfig())
            plugins = [_described(r.plugin, _kind(r.plugin)) for r in records]
    except PluginError as exc:
        return {"where": where, "error": str(exc), "plugins": []}
    except Exception as exc:   # the helper could not start, say: named, never a traceback
        return {"where": where, "error": f"{where}: {type(exc).__name__}: {exc}", "plugins": []}
    return {"where": where, "error": None, "plugins": plugins}


def _entry_point(name: str) -> dict[str, Any]:
    from covet_pipe.config import PluginConfig
    from covet_pipe.discovery import LoadReport, entry_point_records
    report = LoadReport()
    entry_point_records(PluginConfig(), report, only=name)
    where = f"entry point {name}"
    if report.failed:
        return {"where": where, "error": "; ".join(report.failed.values()), "plugins": []}
    return {"where": where, "error": None, "plugins": [_described(r.plugin, _kind(r.plugin)) for r in report.records]}


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Load what *request* names; what loaded and what failed, as plain data."""
    results = [_one(p, p in request.get("sandboxed", ())) for p in request.get("paths", ())]
    results += [_entry_point(n) for n in request.get("entry_points", ())]
    return {"results": results}


def main() -> None:
    logging.disable(logging.WARNING)        # the report says what went wrong; the loaders' logs would repeat it
    request = json.loads(sys.argv[1])
    out = probe(request)
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
