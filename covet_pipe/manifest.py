"""Plugin manifests (``covet-plugin.toml``): where one lives beside its plugin, its fields, and checking it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from covet_pipe.config import check_cpu_limit, parse_size
from covet_pipe.errors import ConfigError, PluginError, PluginLoadError

__all__ = ["MANIFEST", "FIELDS", "PERMISSION_FIELDS", "manifest_path", "read_manifest", "readable_manifest"]

MANIFEST = "covet-plugin.toml"

#: the manifest's fields and their TOML types
FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str, "version": str, "priority": int, "dependencies": list, "protocols": list, "sandbox": bool,
    "failure_policy": str, "permissions": dict, "config": dict, "abi": str,
}
#: the fields of its [permissions] table
PERMISSION_FIELDS: dict[str, type | tuple[type, ...]] = {
    "allowed_files": list, "writable_files": list, "allowed_networks": list,
    "memory_limit": (str, int), "cpu_limit": (int, float), "allowed_syscalls": list,
}


def manifest_path(path: Path) -> Path:
    """Where the manifest of a plugin file, library or package lives.

    ``x.py`` -> ``x.covet-plugin.toml``; a library, ``x.so`` or ``x.cpython-311-x86_64-linux-gnu.so``, ->
    ``x.covet-plugin.toml``; a package folder -> ``covet-plugin.toml`` inside it.
    """
    if path.is_dir():
        return path / MANIFEST
    if path.suffix == ".so":
        return path.with_name(f"{path.name.split('.', 1)[0]}.{MANIFEST}")
    return path.with_name(f"{path.stem}.{MANIFEST}")


def _check_table(table: dict[str, Any], known: dict[str, Any], where: str, mpath: Path) -> None:
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{mpath}: unknown field {where}{key!r}; known fields: {', '.join(known)}",
                              field=f"{where}{key}", path=str(mpath))
        want = known[key]
        if isinstance(value, bool) and want is int or not isinstance(value, want):
            names = want.__name__ if isinstance(want, type) else " or ".join(t.__name__ for t in want)
            raise ConfigError(f"{mpath}: {where}{key}: expected `{names}`, got `{type(value).__name__}` "
                              f"({value!r})", field=f"{where}{key}", path=str(mpath))


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a plugin file, library or package, checked; None when there is none.

    :raises PluginLoadError: naming the file, the field, what was expected and what was found.
    """
    mpath = manifest_path(path)
    if not mpath.is_file():
        return None
    try:
        data = tomllib.loads(mpath.read_text(encoding="utf-8"))
        _check_table(data, FIELDS, "", mpath)
        _check_table(data.get("permissions", {}), PERMISSION_FIELDS, "permissions.", mpath)
        for key, example in (("dependencies", '["jwt_handler>=1,<2"]'), ("protocols", '["http", "resp"]')):
            if not all(isinstance(d, str) for d in data.get(key, [])):
                raise ConfigError(f"{mpath}: {key}: expected a list of strings such as {example}",
                                  field=key, path=str(mpath))
        if data.get("failure_policy", "closed") not in ("closed", "open"):
            raise ConfigError(f"{mpath}: failure_policy: expected 'closed' or 'open', got "
                              f"{data['failure_policy']!r}", field="failure_policy", path=str(mpath))
        if "abi" in data:
            try:
                SpecifierSet(data["abi"])
            except InvalidSpecifier:
                raise ConfigError(f"{mpath}: abi: expected the native ABI versions the plugin is built for, "
                                  f"such as '>=1.1,<2', got {data['abi']!r}", field="abi", path=str(mpath)) from None
        perms = data.get("permissions", {})
        if "memory_limit" in perms:
            parse_size(perms["memory_limit"], field="permissions.memory_limit")
        check_cpu_limit(perms.get("cpu_limit"), field="permissions.cpu_limit")
    except tomllib.TOMLDecodeError as exc:
        raise PluginLoadError(f"{mpath} is not valid TOML: {exc}", path=str(mpath)) from None
    except ConfigError as exc:
        raise PluginLoadError(str(exc) if str(mpath) in str(exc) else f"{mpath}: {exc}",
                              path=str(mpath)) from None
    return data


def readable_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a plugin file, .so or package, or None when there is none or it cannot be read."""
    try:
        return read_manifest(path)
    except PluginError:
        return None
