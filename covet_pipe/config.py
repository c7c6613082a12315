"""PluginConfig: the settings of a PluginManager."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from covet_pipe.errors import ConfigError
from covet_pipe.redis_url import describe

__all__ = ["PluginConfig", "parse_size", "check_cpu_limit"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$")
_PIN = re.compile(r"^sha256:[0-9a-f]{64}$")
_FLEET_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}


#: below this a sandboxed helper's interpreter cannot even start (measured: it needs about 10 MiB)
MIN_MEMORY_LIMIT = 16 * 2**20


def memory_limit(value: int | str | None, *, field: str = "memory_limit") -> int | None:
    """A sandboxed helper's memory limit in bytes: a size (see :func:`parse_size`) of at least 16 MiB."""
    size = parse_size(value, field=field)
    if size is not None and size < MIN_MEMORY_LIMIT:
        raise ConfigError(f"{field}: {value!r} is below the 16 MiB a sandboxed helper's interpreter needs to "
                          f"start; raise it (plugins usually want '256MiB' or more)", field=field)
    return size


def parse_size(value: int | str | None, *, field: str = "memory_limit") -> int | None:
    """Bytes from ``"100MB"`` (10^6), ``"100MiB"`` (2^20), or an int of bytes."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{field}: expected a size such as '100MB', got {value!r}", field=field)
    if isinstance(value, int):
        if value <= 0:
            raise ConfigError(f"{field}: expected a positive number of bytes, got {value}", field=field)
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = (m.group(2) or "").lower()
            if unit in _UNITS:
                size = int(float(m.group(1)) * _UNITS[unit])
                if size > 0:
                    return size
    raise ConfigError(
        f"{field}: expected a size such as '100MB' (10^6 bytes) or '100MiB' (2^20 bytes), got {value!r}",
        field=field,
    )


def check_cpu_limit(value: Any, *, field: str = "cpu_limit") -> float | None:
    """A CPU limit in CPUs (0.8 = 80% of one CPU), at most the CPUs this machine has.

    A limit above the machine's CPUs would limit nothing, so it is refused like 0 is.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{field}: expected a share of CPU above 0 such as 0.8 (80% of one CPU), "
                          f"got {value!r}", field=field)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if value > cpus:
        raise ConfigError(f"{field}: {value!r} CPUs is more than this machine gives covet-pipe ({cpus}), "
                          f"so it would limit nothing; use a share from 0.01 to {cpus} (0.8 = 80% of one CPU)",
                          field=field)
    return float(value)


@dataclass
class PluginConfig:
    """Settings of a PluginManager; every field has a safe default.

    ``plugin_paths`` defaults to empty so nothing is discovered by accident.
    """

    #: folders, ``.py`` files and packages searched by ``load_plugins()``; ``~`` is expanded
    plugin_paths: list[str] = field(default_factory=list)
    #: also load the entry points of the group ``covet_pipe.plugins``
    entry_points: bool = True
    #: run discovered Python plugins in sandboxed helper processes (a plugin's manifest cannot lift it)
    sandbox_enabled: bool = False
    #: files and folders whose plugins you trust to run in-process even with ``sandbox_enabled``
    trusted_paths: list[str] = field(default_factory=list)
    #: system calls added to the sandbox's baseline allowlist
    allowed_syscalls: list[str] = field(default_factory=list)
    #: paths a sandboxed plugin may read
    allowed_files: list[str] = field(default_factory=list)
    #: paths a sandboxed plugin may write
    writable_files: list[str] = field(default_factory=list)
    #: ``host:port`` a sandboxed plugin may connect to
    allowed_networks: list[str] = field(default_factory=list)
    #: memory of a sandboxed plugin: ``"100MB"``, ``"100MiB"`` or bytes
    memory_limit: int | str | None = None
    #: CPU share of one core for a sandboxed plugin (0.8 = 80%)
    cpu_limit: float | None = None
    #: helper processes per sandboxed plugin (calls go to the least busy)
    sandbox_pool_size: int = 1
    #: seconds a sandboxed hook may take; past it the helper is killed and the request gets 503
    sandbox_call_timeout: float = 5.0
    #: sandbox layers without which a helper stops before importing its plugin; None: seccomp,
    #: no_new_privs, landlock, rlimits (also netns, caps_dropped, cgroup: docs/sandbox.md)
    sandbox_require: list[str] | None = None
    #: allow reloading plugins at all (``reload_plugin``)
    hot_reload: bool = False
    #: watch plugin files and reload on change (needs ``hot_reload``)
    reload_on_change: bool = False
    #: look for a missing dependency in plugin_paths and entry points and load it
    auto_resolve_dependencies: bool = False
    #: start members of a dependency cycle (with a warning) instead of refusing them
    allow_circular_dependencies: bool = False
    #: seconds a plugin's ``initialize`` may take before it is marked failed
    initialize_timeout: float = 30.0
    #: seconds a plugin's ``shutdown`` may take
    shutdown_timeout: float = 10.0
    #: seconds to wait for in-flight requests on an old chain before shutting its plugins down
    drain_timeout: float = 30.0
    #: per-plugin settings by plugin name, handed to ``create_plugin(config)``
    plugin_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the operator's failure policy by plugin name or plugin file path (``"open"`` or
    #: ``"closed"``); wins over the plugin's own and its manifest's, for load failures too
    failure_policies: dict[str, str] = field(default_factory=dict)
    #: content-hash pins, ``{"covet-pipe-greet": "sha256:HEX"}``: a plugin package (by distribution or entry
    #: point name) or file (by plugin name, file stem or path) whose content differs is refused at load
    #: (``covet-pipe plugins --hash`` prints the hashes; covet_pipe/pinning.py)
    plugin_hashes: dict[str, str] = field(default_factory=dict)
    #: refuse to start when any plugin fails to load or to start (the error names every failure)
    strict: bool = False
    #: a Redis URL (``redis://``, ``rediss://``, ``unix://``): reloads reach every worker of every host
    #: sharing it and ``fleet_name`` (docs/scaling.md); needs ``hot_reload``
    fleet: str | None = None
    #: the fleet's name: workers with the same Redis and name reload together
    fleet_name: str = "default"
    #: the Redis password is this file's first line (else ``fleet_password_env``, else the URL's)
    fleet_password_file: str | None = None
    #: the environment variable holding the Redis password
    fleet_password_env: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.plugin_paths, (str, os.PathLike)):
            raise ConfigError(
                f"plugin_paths: expected a list of paths, got the single path {self.plugin_paths!r}; "
                f"write plugin_paths=[{str(self.plugin_paths)!r}]",
                field="plugin_paths",
            )
        self.plugin_paths = [os.path.expanduser(os.fspath(p)) for p in self.plugin_paths]
        if isinstance(self.trusted_paths, (str, os.PathLike)):
            raise ConfigError(
                f"trusted_paths: expected a list of paths, got the single path {self.trusted_paths!r}; "
                f"write trusted_paths=[{str(self.trusted_paths)!r}]", field="trusted_paths")
        self.trusted_paths = [os.path.expanduser(os.fspath(p)) for p in self.trusted_paths]
        for name in ("allowed_syscalls", "allowed_files", "writable_files", "allowed_networks"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{name}: expected a list of str, got {value!r}", field=name)
            setattr(self, name, list(value))
        if self.sandbox_require is not None:
            if isinstance(self.sandbox_require, str) or not all(isinstance(v, str) for v in self.sandbox_require):
                raise ConfigError(f"sandbox_require: expected a list of layer names such as ['seccomp', "
                                  f"'landlock'], got {self.sandbox_require!r}", field="sandbox_require")
            self.sandbox_require = list(self.sandbox_require)
        self.memory_limit_bytes = memory_limit(self.memory_limit)
        check_cpu_limit(self.cpu_limit)
        if not isinstance(self.failure_policies, dict):
            raise ConfigError(f"failure_policies: expected a dict such as {{'audit': 'open'}}, got "
                              f"{self.failure_policies!r}", field="failure_policies")
        for key, policy in self.failure_policies.items():
            if policy not in ("open", "closed"):
                raise ConfigError(f"failure_policies[{key!r}]: expected 'open' (serve without the plugin) or "
                                  f"'closed' (answer 503 in its place), got {policy!r}", field="failure_policies")
        self.failure_policies = dict(self.failure_policies)
        if not isinstance(self.plugin_hashes, dict):
            raise ConfigError(f"plugin_hashes: expected a dict such as {{'covet-pipe-greet': 'sha256:...'}}, got "
                              f"{self.plugin_hashes!r}", field="plugin_hashes")
        for key, pin in self.plugin_hashes.items():
            if not isinstance(pin, str) or not _PIN.match(pin):
                raise ConfigError(f"plugin_hashes[{key!r}]: expected 'sha256:' and 64 lower-case hex digits, as "
                                  f"`covet-pipe plugins --hash` prints them, got {pin!r}", field="plugin_hashes")
        self.plugin_hashes = dict(self.plugin_hashes)
        if isinstance(self.sandbox_pool_size, bool) or not isinstance(self.sandbox_pool_size, int) \
                or not 1 <= self.sandbox_pool_size <= 64:
            raise ConfigError(f"sandbox_pool_size: expected a number of helpers from 1 to 64, got "
                              f"{self.sandbox_pool_size!r}", field="sandbox_pool_size")
        for name in ("initialize_timeout", "shutdown_timeout", "drain_timeout", "sandbox_call_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{name}: expected a positive number of seconds, got {value!r}", field=name)
        if self.reload_on_change and not self.hot_reload:
            raise ConfigError(
                "reload_on_change=True needs hot_reload=True: set both to reload plugins when their files change",
                field="reload_on_change",
            )

        self.check_fleet()

    def check_fleet(self) -> None:
        """Refuse fleet settings that cannot work (also after they were set on a PluginConfig made earlier)."""
        if self.fleet is None:
            return
        if not isinstance(self.fleet, str) or urlsplit(self.fleet).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"fleet: expected a Redis URL such as redis://127.0.0.1:6379/0, got "
                              f"{describe(self.fleet) if isinstance(self.fleet, str) else self.fleet!r}", field="fleet")
        if not isinstance(self.fleet_name, str) or not _FLEET_NAME.match(self.fleet_name):
            raise ConfigError(f"fleet_name: expected 1 to 100 letters, digits or . _ - (the workers that reload "
                              f"together share it), got {self.fleet_name!r}", field="fleet_name")
        if self.fleet_password_file is not None and self.fleet_password_env is not None:
            raise ConfigError("fleet_password_file and fleet_password_env: give one of them, not both",
                              field="fleet_password_file")
        if not self.hot_reload:
            raise ConfigError("fleet=... needs hot_reload=True: the fleet reloads plugins on every worker; "
                              "set PluginConfig(hot_reload=True)", field="fleet")

    def policy_for(self, name: str | None, path: str | None) -> str | None:
        """The operator's failure policy for a plugin (by name, then by file path), or None."""
        if name is not None and name in self.failure_policies:
            return self.failure_policies[name]
        if path is not None and self.failure_policies:
            real = os.path.realpath(path)
            for key, policy in self.failure_policies.items():
                if os.path.realpath(os.path.expanduser(key)) == real:
                    return policy
        return None

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain data (for health and logs)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
