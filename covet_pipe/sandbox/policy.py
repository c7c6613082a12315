"""SandboxPolicy: what one sandboxed plugin may touch, built from PluginConfig and its manifest's [permissions]."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

from covet_pipe.config import PluginConfig
from covet_pipe.config import memory_limit as checked_memory_limit
from covet_pipe.errors import ConfigError

__all__ = ["SandboxPolicy", "LAYERS", "DEFAULT_REQUIRE", "DEFAULT_MEMORY_LIMIT"]

#: layer names that ``require`` may list (``cgroup`` is set up and checked by the host, the rest in the helper)
LAYERS = frozenset({"rlimits", "netns", "no_new_privs", "landlock", "caps_dropped", "seccomp", "cgroup"})
#: older names of layers, still accepted in ``require``
_LAYER_ALIASES = {"privileges": "caps_dropped"}
#: without these the helper refuses to import the plugin
DEFAULT_REQUIRE = frozenset({"seccomp", "no_new_privs", "landlock", "rlimits"})
#: RLIMIT_AS when no memory_limit is set (address space, not memory: threads reserve more than they use)
DEFAULT_MEMORY_LIMIT = 1 << 30
#: modules the helper imports from outside the interpreter's prefixes
_RUNTIME_MODULES = ("covet_pipe", "msgspec", "pyseccomp")
#: public files a plugin may read without a grant: the shared libraries that extension modules link
#: against (libpthread for msgspec, libssl ...), dates and randomness
_MULTIARCH = getattr(sys.implementation, "_multiarch", "")
_SYSTEM_READ = ((f"/lib/{_MULTIARCH}", f"/usr/lib/{_MULTIARCH}") if _MULTIARCH else ()) + (
    "/etc/ld.so.cache", "/lib64", "/usr/lib64",
    "/dev/urandom", "/dev/random", "/dev/zero", "/etc/localtime", "/usr/share/zoneinfo")
_SYSTEM_WRITE = ("/dev/null",)


@dataclass(frozen=True)
class SandboxPolicy:
    """The effective permissions of one sandboxed plugin. Immutable; ``as_dict()`` is JSON-safe.

    Paths are absolute and resolved. A network grant is a TCP port on an IP address; Landlock
    (ABI 4 and later) enforces the port only, so a grant of ``10.0.0.5:5432`` opens port 5432 on every
    address the helper can route to.
    """

    #: read-only: the interpreter, the runtime packages, the plugin's folder and ``allowed_files``
    read_paths: tuple[str, ...] = ()
    #: read-write: ``writable_files`` (and /dev/null)
    write_paths: tuple[str, ...] = ()
    #: (IP address, port) pairs; empty means no network at all (own network namespace)
    networks: tuple[tuple[str, int], ...] = ()
    #: bytes of address space (RLIMIT_AS) and of real memory (memory cgroup); None: the 1 GiB default
    memory_limit: int | None = None
    #: share of one CPU (cgroup CPU quota); None: not limited
    cpu_limit: float | None = None
    #: seconds of CPU time over the helper's life (RLIMIT_CPU, SIGXCPU then SIGKILL a second later)
    cpu_time_limit: int | None = 3600
    #: system calls added to the baseline allowlist
    allowed_syscalls: tuple[str, ...] = ()
    #: layers that must be in force, or the helper stops before the plugin is imported
    require: frozenset[str] = field(default_factory=lambda: DEFAULT_REQUIRE)
    #: RLIMIT_NOFILE
    open_files: int = 64
    #: RLIMIT_FSIZE: the largest file the plugin may write
    file_size_limit: int = 64 << 20
    #: pids.max of the helper's cgroup: its threads (forks are refused by seccomp)
    pids_max: int = 64

    @property
    def network(self) -> bool:
        """True when some TCP port is granted (then no network namespace)."""
        return bool(self.networks)

    @property
    def address_space(self) -> int:
        """RLIMIT_AS in bytes."""
        return self.memory_limit or DEFAULT_MEMORY_LIMIT

    def risks(self) -> list[str]:
        """What this policy's grants open beyond the baseline, in words for health and logs."""
        out = [f"{name}: {_RISKY[name]}" for name in self.allowed_syscalls if name in _RISKY]
        if self.networks:
            out.append("allowed_networks: Landlock enforces TCP ports, not addresses: every address on a granted "
                       "port is reachable, and the helper shares the host's network namespace")
        return out

    def as_dict(self) -> dict[str, Any]:
        """Plain data for health, logs and the helper's argv (``from_dict`` reads it back)."""
        d = asdict(self)
        d["risks"] = self.risks()
        d["read_paths"] = list(self.read_paths)
        d["write_paths"] = list(self.write_paths)
        d["networks"] = [_format_grant(h, p) for h, p in self.networks]
        d["allowed_syscalls"] = list(self.allowed_syscalls)
        d["require"] = sorted(self.require)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SandboxPolicy:
        """The policy that ``as_dict()`` described, checked again (the helper trusts nothing implicitly)."""
        data = {k: v for k, v in data.items() if k != "risks"}  # derived, written by as_dict()
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"sandbox policy: unknown field(s) {', '.join(unknown)}", field=unknown[0])
        networks = tuple(_parse_grant(g) for g in data.get("networks", ()))
        syscalls = _check_syscalls(data.get("allowed_syscalls", ()), "allowed_syscalls")
        require = _check_require(data.get("require", sorted(DEFAULT_REQUIRE)), bool(networks))
        policy = cls(
            read_paths=tuple(str(p) for p in data.get("read_paths", ())),
            write_paths=tuple(str(p) for p in data.get("write_paths", ())),
            networks=networks,
            memory_limit=checked_memory_limit(data.get("memory_limit")),
            cpu_limit=_check_cpu(data.get("cpu_limit"), "cpu_limit"),
            cpu_time_limit=_positive_int(data.get("cpu_time_limit", 3600), "cpu_time_limit", optional=True),
            allowed_syscalls=syscalls,
            require=require,
            open_files=_positive_int(data.get("open_files", 64), "open_files"),
            file_size_limit=_positive_int(data.get("file_size_limit", 64 << 20), "file_size_limit", zero=True),
            pids_max=_positive_int(data.get("pids_max", 64), "pids_max"),
        )
        for p in policy.read_paths + policy.write_paths:
            if not os.path.isabs(p):
                raise ConfigError(f"sandbox policy: {p!r} is not an absolute path", field="read_paths")
        return policy

    @classmethod
    def from_config(cls, config: PluginConfig, manifest_permissions: Mapping[str, Any] | None,
                    plugin_dir: str, *, require: Iterable[str] | None = None) -> SandboxPolicy:
        """The effective policy of one plugin: the operator's ``config`` plus the plugin's manifest grants.

        Grants (files, networks, syscalls) are the union of both; limits (memory, CPU) the tighter of both.
        Relative paths in the manifest are taken from ``plugin_dir``.

        :raises ConfigError: naming the field, the bad value and a correct example.
        """
        perms = dict(manifest_permissions or {})
        unknown = sorted(set(perms) - _MANIFEST_KEYS)
        if unknown:
            known = ", ".join(sorted(_MANIFEST_KEYS))
            raise ConfigError(f"permissions.{unknown[0]}: unknown permission; known: {known}",
                              field=f"permissions.{unknown[0]}")
        plugin_dir = os.path.realpath(os.path.expanduser(os.fspath(plugin_dir)))
        if not os.path.isdir(plugin_dir):
            raise ConfigError(f"plugin_dir: {plugin_dir} is not a folder", field="plugin_dir")

        def paths(name: str) -> list[str]:
            out = [_grant_path(p, name, None) for p in _strings(getattr(config, name), name)]
            out += [_grant_path(p, f"permissions.{name}", plugin_dir)
                    for p in _strings(perms.get(name, []), f"permissions.{name}")]
            return out

        writes = _minimal(paths("writable_files") + [p for p in _SYSTEM_WRITE if os.path.exists(p)])
        reads = _minimal(paths("allowed_files") + [plugin_dir] + _runtime_paths()
                         + [os.path.realpath(p) for p in _SYSTEM_READ if os.path.exists(p)])
        nets = [_parse_grant(g, "allowed_networks") for g in _strings(config.allowed_networks, "allowed_networks")]
        nets += [_parse_grant(g, "permissions.allowed_networks")
                 for g in _strings(perms.get("allowed_networks", []), "permissions.allowed_networks")]
        syscalls = _check_syscalls(list(config.allowed_syscalls), "allowed_syscalls")
        syscalls += _check_syscalls(_strings(perms.get("allowed_syscalls", []), "permissions.allowed_syscalls"),
                                    "permissions.allowed_syscalls")
        memory = _tighter(config.memory_limit_bytes,
                          checked_memory_limit(perms.get("memory_limit"), field="permissions.memory_limit"))
        cpu = _tighter(_check_cpu(config.cpu_limit, "cpu_limit"),
                       _check_cpu(perms.get("cpu_limit"), "permissions.cpu_limit"))
        networks = tuple(dict.fromkeys(nets))
        configured = getattr(config, "sandbox_require", None)
        if require is not None:
            required = _check_require(require, bool(networks))
        elif configured is not None:
            required = _check_require(configured, bool(networks), "sandbox_require")
        else:
            required = _check_require(DEFAULT_REQUIRE, bool(networks))
        return cls(
            read_paths=tuple(reads), write_paths=tuple(writes), networks=networks,
            memory_limit=memory, cpu_limit=cpu, allowed_syscalls=tuple(dict.fromkeys(syscalls)),
            require=required,
        )


#: what listing an argument-checked call in allowed_syscalls opens (the check is lifted)
_RISKY = {
    "socket": "every socket family: named unix sockets anywhere on the machine become reachable (Landlock ABI 7 "
              "does not cover connecting to them), and UDP where network is granted (Landlock covers TCP only)",
    "socketpair": "socket pairs of every family",
    "ioctl": "every ioctl request: TIOCSTI can type commands into a terminal the helper holds",
    "kill": "signals to other processes: only Landlock's signal scope (ABI 6) still stops them",
    "tgkill": "signals to threads of other processes: only Landlock's signal scope (ABI 6) still stops them",
    "fcntl": "F_SETOWN/F_SETSIG aim SIGIO at other processes (Landlock's signal scope still applies)",
    "prlimit64": "changing limits: only the capability drop stops raising one",
    "prctl": "every prctl option",
}

_MANIFEST_KEYS = frozenset({"allowed_files", "writable_files", "allowed_networks", "memory_limit", "cpu_limit",
                            "allowed_syscalls"})


def _strings(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: expected a list of strings such as [\"/srv/data\"], got {value!r}", field=name)
    return list(value)


def _grant_path(raw: str, name: str, base: str | None) -> str:
    path = os.path.expanduser(raw)
    if not os.path.isabs(path):
        if base is None:
            raise ConfigError(f"{name}: {raw!r} is relative; give an absolute path such as '/srv/plugin-data'",
                              field=name)
        path = os.path.join(base, path)
    path = os.path.realpath(path)
    if path == "/":
        raise ConfigError(f"{name}: {raw!r} grants the whole filesystem; grant the folders the plugin needs, "
                          "such as '/srv/plugin-data'", field=name)
    if not os.path.exists(path):
        raise ConfigError(f"{name}: {raw!r} does not exist; Landlock grants existing files and folders only: "
                          "create it first, or grant the folder that will hold it", field=name)
    return path


def _minimal(paths: list[str]) -> list[str]:
    """Unique paths without those already inside another one of the list."""
    out: list[str] = []
    for p in sorted(set(paths), key=lambda s: (s.count(os.sep), s)):
        if not any(p == q or p.startswith(q.rstrip(os.sep) + os.sep) for q in out):
            out.append(p)
    return sorted(out)


def _runtime_paths() -> list[str]:
    """What the helper's interpreter reads after confinement: the standard library, the venv, our packages."""
    found = {sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix}
    for name in _RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:
            found.update(spec.submodule_search_locations)
        elif spec.origin:
            found.add(os.path.dirname(spec.origin))
    return [os.path.realpath(p) for p in found if p and os.path.exists(p)]


def _format_grant(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_grant(grant: Any, name: str = "allowed_networks") -> tuple[str, int]:
    example = "e.g. '127.0.0.1:6379' or '[::1]:6379'"
    if not isinstance(grant, str) or ":" not in grant:
        raise ConfigError(f"{name}: expected 'host:port' ({example}), got {grant!r}", field=name)
    host, _, port_text = grant.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}: {grant!r} needs a port from 1 to 65535 ({example})", field=name)
    if host == "localhost":
        return "127.0.0.1", port
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    raise ConfigError(
        f"{name}: {grant!r} names a host; grant an IP address or 'localhost' instead ({example}). Reaching a "
        "host by name needs a broker in the host process that resolves it and passes the connection in, and "
        "covet-pipe has no such broker yet", field=name)


def _check_syscalls(names: Iterable[Any], name: str) -> tuple[str, ...]:
    from covet_pipe.sandbox._seccomp import GUARDED, KILL_LIST, unknown_names
    names = [n for n in names]
    if not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{name}: expected names of system calls such as ['getpriority'], got {names!r}", field=name)
    killed = [n for n in names if n in KILL_LIST]
    if killed:
        raise ConfigError(
            f"{name}: {', '.join(repr(n) for n in killed)} cannot be allowed: the sandbox kills any process that "
            "calls it (an escape primitive on the kill list); remove it, no grant re-allows it", field=name)
    guarded = [n for n in names if n in GUARDED]
    if guarded:
        raise ConfigError(f"{name}: {guarded[0]!r} cannot be listed: {GUARDED[guarded[0]]}; remove it", field=name)
    unknown = unknown_names(names)
    if unknown:
        raise ConfigError(f"{name}: unknown system call(s) {', '.join(repr(n) for n in unknown)}; use the names "
                          "of `man 2 syscalls`, e.g. ['getpriority', 'sched_setaffinity']", field=name)
    return tuple(names)


def _check_require(names: Iterable[str], network: bool, field: str = "require") -> frozenset[str]:
    if isinstance(names, str):
        names = [names]
    names = frozenset(_LAYER_ALIASES.get(n, n) for n in names)
    bad = sorted(names - LAYERS, key=str)
    if bad:
        raise ConfigError(f"{field}: unknown layer(s) {', '.join(repr(n) for n in bad)}; known: "
                          f"{', '.join(sorted(LAYERS))}, e.g. {field}={{'seccomp', 'landlock'}}", field=field)
    if network and "netns" in names:
        raise ConfigError(f"{field}: 'netns' cannot be in force when allowed_networks grants TCP (the plugin then "
                          "shares the host's network, limited to its ports by Landlock); drop one of them",
                          field=field)
    return names


def _check_cpu(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 64:
        raise ConfigError(f"{name}: expected a share of one CPU such as 0.8, got {value!r}", field=name)
    return float(value)


def _positive_int(value: Any, name: str, *, optional: bool = False, zero: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise ConfigError(f"{name}: expected a positive whole number, got {value!r}", field=name)
    return value


def _tighter(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
