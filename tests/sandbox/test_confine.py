"""The hostile battery: real child processes confined by confine.apply(), each attack refused by a named layer.

Each case starts ``python -I hostile/driver.py SPEC`` with an empty environment (plus MALLOC_ARENA_MAX=1);
the driver confines itself as a helper does, imports hostile/cases.py like a plugin and runs one action.
Where a second layer stands behind the first, a variant lifts the first (one allowed_syscalls entry) and
shows the second one holding. Every process that is attacked (sleepers, listeners, ptys) is one this test
started, and no hostile case ever runs unconfined.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from covet_pipe import PluginConfig
from covet_pipe.sandbox import SandboxPolicy, cgroups
from covet_pipe.sandbox._landlock import abi_version
from covet_pipe.sandbox._seccomp import resolve

HOSTILE = Path(__file__).parent / "hostile"
DRIVER = HOSTILE / "driver.py"
LANDLOCK_ABI = abi_version()
SIGSYS = -signal.SIGSYS

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")
needs_landlock_6 = pytest.mark.skipif(LANDLOCK_ABI < 6, reason=f"this kernel has Landlock ABI {LANDLOCK_ABI}; "
                                      "signal and abstract-socket scoping need ABI 6")
needs_cgroups = pytest.mark.skipif(bool(cgroups.missing_controllers()),
                                   reason=f"cgroup v1 controllers missing: {cgroups.missing_controllers()}")


@dataclasses.dataclass
class Run:
    returncode: int
    layers: dict[str, Any] | None
    result: dict[str, Any] | None
    stderr: str


def policy(**config: Any) -> SandboxPolicy:
    """The policy a plugin in hostile/ gets from PluginConfig(**config); extra keys replace policy fields."""
    fields = {k: config.pop(k) for k in list(config) if k in ("cpu_time_limit", "pids_max", "open_files")}
    p = SandboxPolicy.from_config(PluginConfig(**config), None, str(HOSTILE))
    return dataclasses.replace(p, **fields)


def start(pol: SandboxPolicy, case: str, args: dict[str, Any] | None = None, *, wait: bool = False,
          pass_fds: tuple[int, ...] = (), ctty: int | None = None) -> subprocess.Popen[str]:
    spec = {"policy": pol.as_dict(), "case": case, "args": args or {}, "wait": wait, "ctty": ctty}
    return subprocess.Popen([sys.executable, "-I", str(DRIVER), json.dumps(spec)], env={"MALLOC_ARENA_MAX": "1"},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            pass_fds=pass_fds, start_new_session=ctty is not None)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> Run:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the confined child did not finish within {timeout} s; stderr: {err[-2000:]}")
    layers = result = None
    for line in out.splitlines():
        msg = json.loads(line)
        layers = msg.get("layers", layers)
        result = msg.get("result", result)
    return Run(proc.returncode, layers, result, err)


def run(pol: SandboxPolicy, case: str, args: dict[str, Any] | None = None, *, timeout: float = 30,
        **kw: Any) -> Run:
    r = finish(start(pol, case, args, **kw), timeout)
    assert r.layers is not None, f"the child was not confined: rc={r.returncode}, stderr: {r.stderr[-2000:]}"
    assert_confined(r.layers)
    return r


def assert_confined(layers: dict[str, Any]) -> None:
    assert layers["missing"] == {}, layers["missing"]
    assert layers["rlimits"] and layers["no_new_privs"] is True and layers["seccomp"] is True
    assert layers["caps_dropped"] is True
    assert layers["landlock"]["fs"] is True and layers["landlock"]["abi"] == LANDLOCK_ABI
    assert layers["netns"]


def refused(r: Run, code: int) -> None:
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.result is not None and r.result["ok"] is False, r.result
    assert r.result["errno"] == code, (errno.errorcode.get(r.result["errno"]), r.result)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A victim process this test owns, with a secret in its environment."""
    proc = subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(120)"],
                            env={"SECRET_TOKEN": "hunter2-sleeper"})
    yield proc
    proc.kill()
    proc.wait(10)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener on 127.0.0.1 that this test owns."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(0.5)
    yield s
    s.close()


def accepted(s: socket.socket) -> bytes | None:
    """What a connection to the listener sent, or None when nobody connected."""
    try:
        conn, _ = s.accept()
    except (socket.timeout, TimeoutError):
        return None
    with conn:
        conn.settimeout(2)
        try:
            return conn.recv(100)
        except OSError:
            return b""


# -- confinement as seen from inside and outside ----------------------------------------------------------------

def test_benign_plugin_still_works_confined(tmp_path: Path) -> None:
    granted = tmp_path / "granted.txt"
    granted.write_text("hello plugin")
    out = tmp_path / "out.txt"
    out.write_text("")
    r = run(policy(allowed_files=[str(granted)], writable_files=[str(out)]), "benign",
            {"read_path": str(granted), "write_path": str(out)})
    assert r.returncode == 0, r.stderr
    assert r.result == {**r.result, "ok": True, "read": "hello plugin", "threads": [0, 1, 4, 9],
                        "msgspec": {"a": [1, 2]}, "self_signal": True}
    assert out.read_text() == "written by the sandbox"
    layers = r.layers
    assert layers["landlock"] == {"abi": LANDLOCK_ABI, "fs": True, "net": LANDLOCK_ABI >= 4,
                                  "scope": LANDLOCK_ABI >= 6}
    assert layers["netns"]["interfaces"] == "lo only, down"
    assert layers["rlimits"]["as"] == 1 << 30 and layers["rlimits"]["core"] == 0


def test_status_seen_from_outside(tmp_path: Path) -> None:
    proc = start(policy(), "sleep", {"seconds": 30})
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())          # confined by now
        assert_confined(first["layers"])
        status = Path(f"/proc/{proc.pid}/status").read_text()
        assert "\nSeccomp:\t2\n" in status
        assert "\nNoNewPrivs:\t1\n" in status
        for capset in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert f"\n{capset}:\t0000000000000000\n" in status, capset
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{proc.pid}/ns/net") == first["layers"]["netns"]["ns"]
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        assert "Max core file size        0" in limits
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_required_layer_failing_stops_before_the_plugin(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    pol = policy(allowed_files=[str(gone)])
    gone.rmdir()                                             # Landlock cannot open the rule path any more
    proc = start(pol, "exit_now", {"code": 0})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 70, (out, err)
    msg = json.loads(out.splitlines()[-1])
    assert msg["layer"] == "landlock"
    assert "sandbox layer 'landlock' is required" in msg["confinement_error"] and str(gone) in msg["confinement_error"]


def test_optional_layer_failing_is_reported_and_the_rest_hold(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    pol = dataclasses.replace(policy(allowed_files=[str(gone)]), require=frozenset({"seccomp", "rlimits"}))
    gone.rmdir()
    r = finish(start(pol, "read_file", {"path": "/etc/shadow"}))
    assert r.layers is not None and r.layers["landlock"] is False and str(gone) in r.layers["missing"]["landlock"]
    assert r.layers["seccomp"] is True
    assert r.returncode == 0


# -- files --------------------------------------------------------------------------------------------------------

def test_read_etc_shadow_denied_by_landlock() -> None:
    refused(run(policy(), "read_file", {"path": "/etc/shadow"}), errno.EACCES)


def test_read_host_secret_denied_by_landlock(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's secret")
    secret.chmod(0o644)                                      # readable by anyone as far as the mode bits go
    r = run(policy(), "read_file", {"path": str(secret)})
    refused(r, errno.EACCES)
    assert "the host's secret" not in json.dumps(r.result)


def test_write_outside_grants_denied_by_landlock(tmp_path: Path) -> None:
    target = tmp_path / "planted.txt"
    refused(run(policy(), "write_file", {"path": str(target)}), errno.EACCES)
    assert not target.exists()


def test_overwrite_existing_file_outside_grants_denied(tmp_path: Path) -> None:
    target = tmp_path / "config.ini"
    target.write_text("original")
    refused(run(policy(), "write_file", {"path": str(target)}), errno.EACCES)
    assert target.read_text() == "original"


def test_write_dev_shm_denied_by_landlock() -> None:
    target = Path(f"/dev/shm/covet-sandbox-test-{os.getpid()}")
    try:
        refused(run(policy(), "write_file", {"path": str(target)}), errno.EACCES)
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_chmod_outside_grants_denied_by_seccomp(tmp_path: Path) -> None:
    # Landlock (ABI 7) has no right for chmod; uid 0 owns the file, so only the filter stops it.
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    victim.chmod(0o600)
    refused(run(policy(), "chmod_file", {"path": str(victim)}), errno.EPERM)
    assert victim.stat().st_mode & 0o777 == 0o600


# -- network ------------------------------------------------------------------------------------------------------

def test_tcp_connect_denied_without_grant(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    r = run(policy(), "tcp_connect", {"host": "127.0.0.1", "port": port})
    refused(r, errno.EPERM)                                  # seccomp: no AF_INET sockets without a grant
    assert accepted(listener) is None


def test_tcp_connect_denied_by_landlock_and_netns_when_socket_lifted(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    r = run(policy(allowed_syscalls=["socket"]), "tcp_connect", {"host": "127.0.0.1", "port": port})
    refused(r, errno.EACCES if LANDLOCK_ABI >= 4 else errno.ENETUNREACH)
    assert accepted(listener) is None


def test_tcp_connect_allowed_to_granted_port(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    proc = start(policy(allowed_networks=[f"127.0.0.1:{port}"]), "tcp_connect", {"host": "127.0.0.1", "port": port})
    listener.settimeout(20)
    got = accepted(listener)
    r = finish(proc)
    assert r.layers is not None and r.layers["netns"] == "granted network"
    assert r.result == {"ok": True}, r.result
    assert got == b"hello from the sandbox"


@pytest.mark.skipif(LANDLOCK_ABI < 4, reason="TCP port rules need Landlock ABI 4")
def test_tcp_connect_to_other_port_denied_by_landlock(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    other = port + 1 if port < 65535 else port - 1
    r = run(policy(allowed_networks=[f"127.0.0.1:{other}"]), "tcp_connect", {"host": "127.0.0.1", "port": port})
    refused(r, errno.EACCES)
    assert accepted(listener) is None


def test_tcp_fast_open_past_landlock_denied_by_seccomp(listener: socket.socket) -> None:
    # sendto(MSG_FASTOPEN) connects without connect(): Landlock's connect rule does not see it (6.18, ABI 7).
    port = listener.getsockname()[1]
    other = port + 1 if port < 65535 else port - 1
    r = run(policy(allowed_networks=[f"127.0.0.1:{other}"]), "tcp_fastopen", {"host": "127.0.0.1", "port": port})
    refused(r, errno.EPERM)
    assert accepted(listener) is None


def test_udp_denied_even_with_network_grant() -> None:
    r = run(policy(allowed_networks=["127.0.0.1:53"]), "udp_send", {"host": "127.0.0.1", "port": 53})
    refused(r, errno.EPERM)


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"covet-sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    s.bind("\0" + name)
    s.listen(4)
    s.settimeout(0.5)
    yield s, "@" + name
    s.close()


def test_abstract_unix_socket_denied_by_seccomp(abstract_listener: tuple[socket.socket, str]) -> None:
    s, name = abstract_listener
    refused(run(policy(), "unix_connect", {"address": name}), errno.EPERM)
    assert accepted(s) is None


def test_abstract_unix_socket_unreachable_from_own_netns(abstract_listener: tuple[socket.socket, str]) -> None:
    s, name = abstract_listener
    refused(run(policy(allowed_syscalls=["socket"]), "unix_connect", {"address": name}), errno.ECONNREFUSED)
    assert accepted(s) is None


@needs_landlock_6
def test_abstract_unix_socket_denied_by_landlock_scope(abstract_listener: tuple[socket.socket, str]) -> None:
    # socket() lifted and the host's network shared (a TCP grant): only Landlock's scope is left.
    s, name = abstract_listener
    r = run(policy(allowed_syscalls=["socket"], allowed_networks=["127.0.0.1:1"]), "unix_connect", {"address": name})
    refused(r, errno.EPERM)
    assert accepted(s) is None


def test_named_unix_socket_denied_by_seccomp(tmp_path: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(tmp_path / "host.sock"))
    s.listen(4)
    s.settimeout(0.5)
    with s:
        refused(run(policy(), "unix_connect", {"address": str(tmp_path / "host.sock")}), errno.EPERM)
        assert accepted(s) is None


# -- escape primitives: killed ------------------------------------------------------------------------------------

RAW_KILLED = ["ptrace", "process_vm_readv", "bpf", "io_uring_setup", "userfaultfd", "perf_event_open", "mount",
              "unshare", "setns", "keyctl", "open_by_handle_at", "init_module", "chroot"]


@pytest.mark.parametrize("name", RAW_KILLED)
def test_raw_syscall_on_kill_list_gets_sigsys(name: str) -> None:
    nr = resolve(name)
    assert nr is not None and nr >= 0
    r = run(policy(), "raw_syscall", {"nr": nr, "args": [0, 0, 0, 0, 0, 0]})
    assert r.returncode == SIGSYS and r.result is None, (r.returncode, r.result)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the x32 and i386 entry points exist on x86_64 only")
def test_raw_x32_syscall_gets_sigsys() -> None:
    # The x32 table is another way in; the filter's bad-arch action kills it.
    r = run(policy(), "raw_syscall", {"nr": 0x40000000 | 59, "args": [0, 0, 0]})
    assert r.returncode == SIGSYS


def test_raw_unlisted_syscall_gets_eperm() -> None:
    r = run(policy(), "raw_syscall", {"nr": resolve("personality"), "args": [0xFFFFFFFF]})
    assert r.returncode == 0 and r.result == {"ok": False, "return": -1, "errno": errno.EPERM}


def test_exec_shell_gets_sigsys() -> None:
    r = run(policy(), "exec_shell")
    assert r.returncode == SIGSYS and r.result is None


def test_subprocess_refused() -> None:
    refused(run(policy(), "run_subprocess"), errno.EPERM)


def test_fork_bomb_stopped_at_first_fork() -> None:
    r = run(policy(), "fork_bomb", {"limit": 500})
    refused(r, errno.EPERM)
    assert r.result["forks"] == 0


def test_ptrace_sleeper_gets_sigsys(sleeper: subprocess.Popen[bytes]) -> None:
    r = run(policy(), "ptrace_attach", {"pid": sleeper.pid})
    assert r.returncode == SIGSYS
    assert sleeper.poll() is None
    assert "\nTracerPid:\t0\n" in Path(f"/proc/{sleeper.pid}/status").read_text()


@pytest.mark.parametrize("what", ["mem", "environ"])
def test_read_other_process_memory_and_environ_denied(sleeper: subprocess.Popen[bytes], what: str) -> None:
    r = run(policy(), "read_file", {"path": f"/proc/{sleeper.pid}/{what}"})
    refused(r, errno.EACCES)
    assert "hunter2" not in json.dumps(r.result)


def test_signal_sleeper_denied_by_seccomp(sleeper: subprocess.Popen[bytes]) -> None:
    refused(run(policy(), "signal_process", {"pid": sleeper.pid, "sig": signal.SIGKILL}), errno.EPERM)
    time.sleep(0.1)
    assert sleeper.poll() is None


@needs_landlock_6
def test_signal_sleeper_denied_by_landlock_scope_when_kill_lifted(sleeper: subprocess.Popen[bytes]) -> None:
    refused(run(policy(allowed_syscalls=["kill"]), "signal_process", {"pid": sleeper.pid, "sig": signal.SIGKILL}),
            errno.EPERM)
    time.sleep(0.1)
    assert sleeper.poll() is None


@pytest.fixture
def pty() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    os.set_blocking(master, False)
    yield master, slave
    os.close(master)
    os.close(slave)


def _pty_input(master: int) -> bytes:
    try:
        return os.read(master, 100)
    except BlockingIOError:
        return b""


def test_tiocsti_on_controlling_tty_denied_by_seccomp(pty: tuple[int, int]) -> None:
    master, slave = pty
    r = run(policy(), "tiocsti", {"fd": slave, "text": "id\n"}, pass_fds=(slave,), ctty=slave)
    refused(r, errno.EPERM)
    time.sleep(0.05)
    assert b"id" not in _pty_input(master)


def test_tiocsti_succeeds_when_ioctl_lifted_so_the_filter_is_what_stops_it(pty: tuple[int, int]) -> None:
    # The control: same child, same pty as its controlling terminal, ioctl unfiltered: the keystrokes arrive.
    master, slave = pty
    r = run(policy(allowed_syscalls=["ioctl"]), "tiocsti", {"fd": slave, "text": "Q"}, pass_fds=(slave,), ctty=slave)
    assert r.result == {"ok": True}, r.result
    time.sleep(0.05)
    assert b"Q" in _pty_input(master)


# -- limits -------------------------------------------------------------------------------------------------------

def test_raise_rlimit_denied_by_seccomp() -> None:
    r = run(policy(), "raise_rlimit")
    assert r.result is not None and r.result["ok"] is False
    assert "not allowed to raise maximum limit" in r.result["error"]     # CPython's text for EPERM


def test_raise_rlimit_denied_by_capability_drop_when_prlimit_lifted() -> None:
    r = run(policy(allowed_syscalls=["prlimit64", "setrlimit"]), "raise_rlimit")
    assert r.result is not None and r.result["ok"] is False
    assert "not allowed to raise maximum limit" in r.result["error"]


@pytest.mark.parametrize("memory_limit", [None, "256MiB"])
def test_allocate_2gib_fails(memory_limit: str | None) -> None:
    r = run(policy(memory_limit=memory_limit), "allocate", {"nbytes": 2 << 30})
    assert r.returncode == 0 and r.result is not None
    assert r.result["ok"] is False and r.result["error"].startswith("MemoryError")


def test_cpu_spin_ended_by_rlimit_cpu() -> None:
    start_t = time.monotonic()
    r = run(policy(cpu_time_limit=1), "spin", timeout=20)
    assert r.returncode in (-signal.SIGXCPU, -signal.SIGKILL), r.returncode
    assert time.monotonic() - start_t < 15


def test_segfault_is_contained() -> None:
    r = run(policy(), "segfault")
    assert r.returncode == -signal.SIGSEGV


def test_os_exit_code_passes_through() -> None:
    r = run(policy(), "exit_now", {"code": 3})
    assert r.returncode == 3


def test_thread_bomb_bounded_by_address_space() -> None:
    r = run(policy(memory_limit="256MiB"), "thread_bomb", {"limit": 2000})
    assert r.result is not None and r.result["ok"] is False and r.result["threads"] < 200


# -- cgroups (host side) -----------------------------------------------------------------------------------------

def _in_cgroup(pol: SandboxPolicy, case: str, args: dict[str, Any], *, cpu: float | None = None,
               memory: int | None = None, pids: int | None = None, timeout: float = 30) -> tuple[Run, dict]:
    proc = start(pol, case, args, wait=True)
    group = cgroups.CgroupLimits.create(f"test-{os.getpid()}-{proc.pid}", cpu, memory, pids)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = json.loads(proc.stdout.readline())
        assert_confined(first["layers"])
        group.add(proc.pid)
        assert proc.pid in group.pids()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        r = finish(proc, timeout)
        r.layers = first["layers"]
        return r, group.stats()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        group.remove()
        assert not group.paths


@needs_cgroups
def test_cgroup_cpu_quota_holds_a_spinning_plugin() -> None:
    r, stats = _in_cgroup(policy(), "spin", {"seconds": 1.5}, cpu=0.2)
    assert r.result is not None and r.result["ok"], r.stderr
    assert r.result["cpu"] < 0.6 * r.result["wall"], r.result
    assert stats["cpu_nr_throttled"] > 0


@needs_cgroups
def test_cgroup_memory_limit_kills_a_plugin_over_it() -> None:
    r, stats = _in_cgroup(policy(), "allocate", {"nbytes": 300 << 20}, memory=96 << 20)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.result)
    assert stats["memory_oom_kills"] >= 1, stats


@needs_cgroups
def test_cgroup_pids_max_caps_threads() -> None:
    r, stats = _in_cgroup(policy(), "thread_bomb", {"limit": 200}, pids=8)
    assert r.result is not None and r.result["ok"] is False and r.result["threads"] <= 7, r.result


@needs_cgroups
def test_cgroup_report_and_removal() -> None:
    group = cgroups.CgroupLimits.create(f"test-{os.getpid()}-report", 0.5, 64 << 20, 16)
    try:
        assert group.report() == {"controllers": ["cpu", "memory", "pids"],
                                  "limits": {"cpu_quota": 0.5, "memory_bytes": 64 << 20, "pids_max": 16},
                                  "missing": {}}
        assert Path(group.paths["cpu"], "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert Path(group.paths["pids"], "pids.max").read_text().strip() == "16"
    finally:
        group.remove()
    assert not any(Path(cgroups.ROOT, c, cgroups.PARENT, f"test-{os.getpid()}-report").exists()
                   for c in cgroups.CONTROLLERS)


def test_cgroup_name_checked() -> None:
    with pytest.raises(ValueError, match="cgroup name '../x'"):
        cgroups.CgroupLimits.create("../x", None, None, None)
