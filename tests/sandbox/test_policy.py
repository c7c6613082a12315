"""SandboxPolicy: what a sandboxed plugin is granted, and the messages for grants that are refused."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from covet_pipe import ConfigError, PluginConfig
from covet_pipe.sandbox import SandboxPolicy
from covet_pipe.sandbox._seccomp import GUARDED, KILL_LIST
from covet_pipe.sandbox.policy import DEFAULT_MEMORY_LIMIT, DEFAULT_REQUIRE


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plugin"
    d.mkdir()
    (d / "plug.py").write_text("plugin = None\n")
    return d


def make(plugin_dir: Path, manifest: dict | None = None, **config) -> SandboxPolicy:
    return SandboxPolicy.from_config(PluginConfig(**config), manifest, str(plugin_dir))


def test_defaults_read_interpreter_and_plugin_dir_only(plugin_dir: Path) -> None:
    p = make(plugin_dir)
    assert str(plugin_dir) in p.read_paths
    assert os.path.realpath(sys.base_prefix) in p.read_paths
    assert any(os.path.realpath(sys.prefix).startswith(r) for r in p.read_paths)
    import covet_pipe
    pkg = os.path.dirname(os.path.realpath(covet_pipe.__file__))
    assert any(pkg == r or pkg.startswith(r + os.sep) for r in p.read_paths)
    assert p.write_paths == ("/dev/null",)
    assert not any(r in ("/", "/etc", "/tmp", "/root", "/proc") for r in p.read_paths)
    assert p.networks == () and not p.network
    assert p.require == DEFAULT_REQUIRE
    assert p.address_space == DEFAULT_MEMORY_LIMIT


def test_grants_from_config_and_manifest_are_united(plugin_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (plugin_dir / "assets").mkdir()
    out = tmp_path / "out.log"
    out.write_text("")
    p = make(plugin_dir, {"allowed_files": ["assets"], "writable_files": [str(out)],
                          "allowed_networks": ["10.0.0.5:5432"], "allowed_syscalls": ["getpriority"]},
             allowed_files=[str(data)], allowed_networks=["127.0.0.1:6379"], allowed_syscalls=["sched_getparam"])
    assert str(data) in p.read_paths
    assert str(plugin_dir) in p.read_paths          # assets/ is inside it: folded into the plugin dir
    assert str(out) in p.write_paths
    assert p.networks == (("127.0.0.1", 6379), ("10.0.0.5", 5432))
    assert p.allowed_syscalls == ("sched_getparam", "getpriority")


def test_limits_take_the_tighter_of_config_and_manifest(plugin_dir: Path) -> None:
    p = make(plugin_dir, {"memory_limit": "100MB", "cpu_limit": 0.9}, memory_limit="64MiB", cpu_limit=1.5)
    assert p.memory_limit == 64 * 2**20
    assert p.cpu_limit == 0.9
    assert make(plugin_dir, {"memory_limit": "100MB"}).memory_limit == 100 * 10**6


@pytest.mark.parametrize("text, size", [("100MB", 100 * 10**6), ("100MiB", 100 * 2**20), ("1GiB", 2**30),
                                        (123456789, 123456789)])
def test_memory_limit_sizes(plugin_dir: Path, text: object, size: int) -> None:
    assert make(plugin_dir, {"memory_limit": text}).memory_limit == size


def test_memory_limit_bad_size_names_field_and_example(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"permissions\.memory_limit: expected a size such as '100MB'") as e:
        make(plugin_dir, {"memory_limit": "lots"})
    assert e.value.field == "permissions.memory_limit"


def test_host_name_grant_refused_until_broker_exists(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"'db\.example\.com:5432' names a host.*broker") as e:
        make(plugin_dir, allowed_networks=["db.example.com:5432"])
    assert e.value.field == "allowed_networks"
    assert "'127.0.0.1:6379'" in str(e.value)


@pytest.mark.parametrize("grant, parsed", [("localhost:80", ("127.0.0.1", 80)), ("[::1]:8080", ("::1", 8080)),
                                           ("192.168.1.2:1", ("192.168.1.2", 1))])
def test_network_grants_parse_ip_literals(plugin_dir: Path, grant: str, parsed: tuple) -> None:
    assert make(plugin_dir, allowed_networks=[grant]).networks == (parsed,)


@pytest.mark.parametrize("grant", ["127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:http", ":80"])
def test_network_grant_without_valid_port_refused(plugin_dir: Path, grant: str) -> None:
    with pytest.raises(ConfigError, match=r"allowed_networks: .*e\.g\. '127\.0\.0\.1:6379'"):
        make(plugin_dir, allowed_networks=[grant])


def test_kill_list_syscall_never_reallowed_and_named(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"allowed_syscalls: 'ptrace' cannot be allowed.*kill list") as e:
        make(plugin_dir, allowed_syscalls=["getpriority", "ptrace"])
    assert e.value.field == "allowed_syscalls"
    with pytest.raises(ConfigError, match=r"permissions\.allowed_syscalls: 'execve'"):
        make(plugin_dir, {"allowed_syscalls": ["execve"]})


@pytest.mark.parametrize("name", sorted(KILL_LIST))
def test_every_kill_list_name_refused(plugin_dir: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=repr(name)):
        make(plugin_dir, allowed_syscalls=[name])


@pytest.mark.parametrize("name", sorted(GUARDED))
def test_guarded_calls_refused_with_reason(plugin_dir: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}' cannot be listed: "):
        make(plugin_dir, allowed_syscalls=[name])


def test_unknown_syscalls_refused_naming_them(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown system call\(s\) 'fly', 'teleport'; .*e\.g\. \['getpriority'"):
        make(plugin_dir, allowed_syscalls=["getpriority", "fly", "teleport"])


def test_documented_example_syscalls_accepted(plugin_dir: Path) -> None:
    p = make(plugin_dir, allowed_syscalls=["read", "write", "socket"])
    assert p.allowed_syscalls == ("read", "write", "socket")
    assert any(r.startswith("socket: ") for r in p.risks())


def test_relative_path_in_config_refused_with_example(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"allowed_files: 'data' is relative; give an absolute path"):
        make(plugin_dir, allowed_files=["data"])


def test_missing_path_refused(plugin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"writable_files: .* does not exist; .*create it first"):
        make(plugin_dir, writable_files=[str(tmp_path / "nope")])


def test_whole_filesystem_grant_refused(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"grants the whole filesystem"):
        make(plugin_dir, allowed_files=["/"])


def test_unknown_manifest_permission_refused(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"permissions\.root: unknown permission; known: allowed_files"):
        make(plugin_dir, {"root": True})


def test_require_unknown_layer_refused(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"require: unknown layer\(s\) 'selinux'"):
        SandboxPolicy.from_config(PluginConfig(), None, str(plugin_dir), require={"seccomp", "selinux"})


def test_require_netns_with_network_grant_refused(plugin_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"'netns' cannot be in force when allowed_networks grants TCP"):
        SandboxPolicy.from_config(PluginConfig(allowed_networks=["127.0.0.1:80"]), None, str(plugin_dir),
                                  require={"netns"})


def test_as_dict_is_json_and_round_trips(plugin_dir: Path) -> None:
    p = make(plugin_dir, allowed_networks=["[::1]:8080", "127.0.0.1:80"], memory_limit="64MiB", cpu_limit=0.5)
    d = json.loads(json.dumps(p.as_dict()))
    assert d["networks"] == ["[::1]:8080", "127.0.0.1:80"]
    assert d["require"] == sorted(DEFAULT_REQUIRE)
    assert any("ports, not addresses" in r for r in d["risks"])
    assert SandboxPolicy.from_dict(d) == p


def test_from_dict_checks_again(plugin_dir: Path) -> None:
    d = make(plugin_dir).as_dict()
    with pytest.raises(ConfigError, match="'ptrace'"):
        SandboxPolicy.from_dict({**d, "allowed_syscalls": ["ptrace"]})
    with pytest.raises(ConfigError, match="unknown field"):
        SandboxPolicy.from_dict({**d, "trust_me": True})


def test_policy_is_frozen(plugin_dir: Path) -> None:
    p = make(plugin_dir)
    with pytest.raises(AttributeError):
        p.read_paths = ("/",)  # type: ignore[misc]
