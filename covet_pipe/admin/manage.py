"""The admin API's handlers beyond list, health and reload: load, unload, one plugin, its sandbox policy,
the chain per protocol, recent errors and reload history.

Each is ``async def handler(manager, params, request) -> (status, document)`` (see
:mod:`covet_pipe.admin.routes`, which lists them). A client's mistake is a 4xx whose ``error`` says what
was wrong and what to do; nothing here lets an exception's traceback reach the client.
"""

from __future__ import annotations

import json
from typing import Any

from covet_pipe.errors import PluginError, PluginLoadError, PluginNotFoundError, PluginValidationError
from covet_pipe.logsafe import printable

__all__ = ["load", "unload", "plugin", "policy", "chain", "errors", "reloads", "LOAD_EXAMPLE"]

#: a correct body for POST /_plugins/load, quoted by its 400s
LOAD_EXAMPLE = {"path": "plugins/stamp.py", "sandbox": False}
#: the longest path a load request may name
MAX_PATH = 4096


def _known(manager: Any) -> list[str]:
    return sorted(p["name"] for p in manager.list_plugins())


def _no_plugin(manager: Any, name: str) -> tuple[int, Any]:
    return 404, {"error": f"no plugin named {printable(name, 200)!r}", "plugins": _known(manager)}


def _load_body(body: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """The load request's fields, or why the body is not one."""
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else None
    except (UnicodeDecodeError, ValueError):
        return None, "the body is not JSON"
    if not isinstance(data, dict):
        return None, "the body must be a JSON object"
    unknown = sorted(set(data) - {"path", "sandbox"})
    if unknown:
        return None, f"unknown field {printable(unknown[0], 100)!r}; the fields are 'path' and 'sandbox'"
    path = data.get("path")
    if not isinstance(path, str) or not path:
        return None, "'path' must be a non-empty string: the plugin file or package to load"
    if len(path) > MAX_PATH:
        return None, f"'path' must be a file path of at most {MAX_PATH} characters"
    sandbox = data.get("sandbox", False)
    if not isinstance(sandbox, bool):
        return None, "'sandbox' must be true or false"
    return {"path": path, "sandbox": sandbox}, None


async def load(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """``load_plugin_from_path(path, sandbox=...)``: 201 with the names loaded and started."""
    fields, problem = _load_body(request.body)
    if fields is None:
        return 400, {"error": f"POST /_plugins/load: {problem}", "example": LOAD_EXAMPLE}
    path, sandbox = fields["path"], fields["sandbox"]
    shown = printable(path, 300)
    try:
        names = await manager.load_plugin_from_path(path, sandbox=sandbox)
    except PluginValidationError as exc:        # a name already taken (or a bad plugin)
        status = 409 if exc.plugin_name is not None and exc.plugin_name in _known(manager) else 422
        return status, {"error": f"{shown} was not loaded: {printable(str(exc), 2000)}", "path": path,
                        "plugin": exc.plugin_name}
    except PluginError as exc:
        return 422, {"error": f"{shown} was not loaded: {printable(str(exc), 2000)}", "path": path,
                     "plugin": exc.plugin_name}
    except (OSError, ValueError) as exc:       # a name too long, a NUL, a lone surrogate, a folder unread ...
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        return 422, {"error": f"{shown} was not loaded: it cannot be read ({why}); give the path of a "
                              "plugin file or package that this server can read", "path": path, "plugin": None}
    plugins = {p["name"]: p for p in manager.list_plugins()}
    return 201, {"loaded": names, "plugins": [_summary(plugins[n]) for n in names if n in plugins]}


def _summary(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info.get(k) for k in ("name", "version", "state", "kinds", "error")}


def _flag(value: str | None) -> bool | None:
    """A query flag: absent or 0/false is False, 1/true is True, anything else None."""
    if value is None:
        return False
    return {"1": True, "true": True, "0": False, "false": False}.get(value.lower())


async def unload(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """``unload_plugin(name, cascade=?cascade)``: 200 with the names unloaded; 409 naming the dependents."""
    name = params["name"]
    cascade = _flag(request.query.get("cascade"))
    if cascade is None:
        return 400, {"error": "?cascade= takes 1 or 0 (true or false): 1 unloads the plugins that depend "
                              "on this one as well"}
    if name not in _known(manager):
        return _no_plugin(manager, name)
    try:
        names = await manager.unload_plugin(name, cascade=cascade)
    except PluginNotFoundError:         # unloaded meanwhile by another call
        return _no_plugin(manager, name)
    except PluginError as exc:
        dependents = [p["name"] for p in manager.list_plugins()
                      if any(_dep_name(d) == name for d in p.get("dependencies", ()))]
        return 409, {"error": f"{printable(str(exc), 2000)}; or DELETE /_plugins/{name}?cascade=1",
                     "dependents": dependents}
    return 200, {"unloaded": names}


def _dep_name(spec: str) -> str:
    """The plugin name of a dependency constraint such as ``auth>=2,<3``."""
    for i, ch in enumerate(spec):
        if ch in "<>=!~ ;[(":
            return spec[:i]
    return spec


async def plugin(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """One plugin's record: what ``list_plugins()`` says of it, its health and its reloads."""
    name = params["name"]
    info = next((p for p in manager.list_plugins() if p["name"] == name), None)
    if info is None:
        return _no_plugin(manager, name)
    health = (await manager.get_health_status())["plugins"].get(name, {})
    info = dict(info)
    info["health"] = {k: health.get(k) for k in ("state", "error", "reload_error", "load_failed") if k in health}
    info["reloads"] = manager.reload_counts().get(name, {"ok": 0, "failed": 0})
    info["sandboxed"] = "sandbox" in health
    return 200, info


async def policy(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """The effective sandbox policy of one plugin (``{"sandboxed": false, ...}`` for an in-process one)."""
    from covet_pipe.sandbox import cgroups, confine    # the sandbox's modules, only when asked

    name = params["name"]
    if name not in _known(manager):
        return _no_plugin(manager, name)
    health = (await manager.get_health_status())["plugins"].get(name, {})
    sandbox = health.get("sandbox")
    support = confine.kernel_support()
    missing = cgroups.missing_controllers()
    kernel = {"landlock_abi": support["landlock_abi"], "landlock": support["landlock_abi"] > 0,
              "seccomp": support["libseccomp"] is True,
              "cgroups": {c: c not in missing for c in cgroups.CONTROLLERS}, "cgroups_missing": missing}
    if sandbox is None:
        note = ("its file did not load, so nothing of it runs: a stand-in answers in its place ("
                f"{printable(str(health.get('error')), 500)})" if health.get("load_failed") else
                "loaded in-process: it runs with the host's privileges; load it with sandbox=true to confine it")
        return 200, {"plugin": name, "sandboxed": False, "kernel": kernel, "note": note}
    p = sandbox.get("policy") or {}
    baseline = confine.syscall_baseline()
    return 200, {
        "plugin": name, "sandboxed": True, "state": sandbox.get("state"),
        "permissions": {"read_paths": p.get("read_paths", []), "write_paths": p.get("write_paths", []),
                        "networks": p.get("networks", [])},
        "syscalls": {"baseline": baseline["allowed"], "conditional": baseline["conditional"],
                     "added": p.get("allowed_syscalls", [])},
        "limits": {k: p.get(k) for k in ("memory_limit", "cpu_limit", "cpu_time_limit", "open_files",
                                         "file_size_limit", "pids_max")},
        "require": p.get("require", []), "risks": p.get("risks", []),
        "layers": sandbox.get("layers"), "kernel": kernel,
    }


async def chain(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """The middleware chain in request order, and per protocol the middleware that runs for it, in order."""
    entries = [e._asdict() for e in manager.get_middleware_chain()]
    records = manager.protocol_records()
    protocols: set[str] = {"http", "websocket"}
    for record in records:
        try:
            protocols.update(str(p) for p in record.plugin.supported_protocols())
        except Exception:       # a plugin's own method: the chain is still listed
            pass
    for e in entries:
        protocols.update(p for p in e.get("protocols", ()) if p != "*")
    by_protocol = {p: [e["name"] for e in entries if p in e.get("protocols", ()) or "*" in e.get("protocols", ())]
                   for p in sorted(protocols)}
    return 200, {"middleware": entries, "protocols": [r.name for r in records], "by_protocol": by_protocol}


async def errors(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """The last errors the plugins raised (in their hooks, initialize or shutdown), newest first."""
    return 200, {"errors": manager.recent_errors()}


async def reloads(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
    """The last reloads, newest first, and per plugin how many worked and failed."""
    return 200, {"reloads": manager.reload_history(), "counts": manager.reload_counts()}
