"""Confining a helper process: called inside a fresh ``python -I`` helper before it imports the plugin.

The order is the one that works on this machine (see PLATFORM.md): rlimits, network namespace (while
still privileged and single-threaded), no_new_privs, Landlock (rule paths opened while they can be),
capabilities or uid, and the seccomp filter last, because it forbids the calls the earlier steps make.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
from typing import Any, Callable

from covet_pipe.errors import CovetPipeError
from covet_pipe.sandbox import _caps, _landlock, _seccomp
from covet_pipe.sandbox.policy import SandboxPolicy

__all__ = ["apply", "ConfinementError", "kernel_support", "syscall_baseline"]

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_PR_GET_SECCOMP = 21
_M_ARENA_MAX = -8

_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int
_libc.unshare.argtypes = [ctypes.c_int]
_libc.unshare.restype = ctypes.c_int
_libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mallopt.restype = ctypes.c_int


class ConfinementError(CovetPipeError):
    """A layer that the policy requires could not be put in force; the plugin must not be imported.

    ``layer`` names it and ``report`` holds what was achieved up to then.
    """

    def __init__(self, message: str, *, layer: str, report: dict[str, Any]):
        super().__init__(message)
        #: the required layer that failed
        self.layer = layer
        #: the layers achieved so far, as ``apply()`` would have returned them
        self.report = report


def _errno_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg2: int = 0) -> int:
    res = _libc.prctl(option, arg2, 0, 0, 0)
    if res < 0:
        raise _errno_error(f"prctl({option})")
    return int(res)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _set_limit(which: int, value: int) -> int:
    """Set soft and hard limit to ``value``, or to the current hard limit when that is lower."""
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
    return value


def _rlimits(policy: SandboxPolicy, stay_root: bool) -> dict[str, Any]:
    # RLIMIT_AS counts reserved address space: one malloc arena keeps threads from reserving 64 MiB each.
    _libc.mallopt(_M_ARENA_MAX, 1)
    out: dict[str, Any] = {"core": _set_limit(resource.RLIMIT_CORE, 0)}
    out["as"] = _set_limit(resource.RLIMIT_AS, policy.address_space)
    if policy.cpu_time_limit:
        # SIGXCPU at the soft limit, SIGKILL one second later even if the plugin catches SIGXCPU.
        soft, hard = policy.cpu_time_limit, policy.cpu_time_limit + 1
        _, cur_hard = resource.getrlimit(resource.RLIMIT_CPU)
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        out["cpu"] = soft
    out["nofile"] = _set_limit(resource.RLIMIT_NOFILE, policy.open_files)
    out["fsize"] = _set_limit(resource.RLIMIT_FSIZE, policy.file_size_limit)
    out["memlock"] = _set_limit(resource.RLIMIT_MEMLOCK, 0)
    out["msgqueue"] = _set_limit(resource.RLIMIT_MSGQUEUE, 0)
    if stay_root:
        _set_limit(resource.RLIMIT_NPROC, 0)
        out["nproc"] = "0, not enforced for uid 0: seccomp refuses fork, the pids cgroup caps threads"
    else:
        # It would count every task of the uid (all helpers running as nobody), so it is left alone.
        out["nproc"] = "not set: seccomp refuses fork, the pids cgroup caps threads"
    return out


def _netns(single_thread: bool) -> dict[str, Any]:
    before = os.readlink("/proc/self/ns/net")
    if _libc.unshare(_CLONE_NEWNET) < 0:
        first = _errno_error("unshare(CLONE_NEWNET)")
        if not single_thread:
            raise first
        # Without CAP_SYS_ADMIN a user namespace makes us its root; that needs a single thread.
        if _libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) < 0:
            raise _errno_error("unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    after = os.readlink("/proc/self/ns/net")
    if after == before:
        raise RuntimeError("unshare(CLONE_NEWNET) returned but the network namespace did not change")
    return {"ns": after, "interfaces": "lo only, down"}


def _no_new_privs() -> bool:
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    if _prctl(_PR_GET_NO_NEW_PRIVS) != 1:
        raise RuntimeError("PR_SET_NO_NEW_PRIVS did not stick")
    return True


def _nobody() -> tuple[int, int] | None:
    try:
        import pwd
        entry = pwd.getpwnam("nobody")
    except (ImportError, KeyError):
        return None
    return entry.pw_uid, entry.pw_gid


def _uid_plan(policy: SandboxPolicy) -> tuple[str, tuple[int, int] | None]:
    """Switch to nobody only where nobody can read everything the helper needs; else drop capabilities."""
    if os.geteuid() != 0:
        return "already unprivileged", None
    nobody = _nobody()
    if nobody is None:
        return "no 'nobody' user", None
    blocked = _caps.readable_by_others(policy.read_paths)
    if blocked is not None:
        return f"{blocked} is not readable by nobody", None
    for path in policy.write_paths:
        if path != "/dev/null" and not os.stat(path).st_mode & 0o002:
            return f"{path} is not writable by nobody", None
    return "nobody can read the runtime", nobody


def kernel_support() -> dict[str, Any]:
    """What this kernel and library offer, without changing anything (for health and docs)."""
    return {"landlock_abi": _landlock.abi_version(), "libseccomp": _seccomp.available() or True,
            "euid": os.geteuid()}


def syscall_baseline() -> dict[str, list[str]]:
    """The system calls every helper may make (``allowed``), and those allowed with their arguments checked
    (``conditional``); a policy's ``allowed_syscalls`` add to these."""
    return {"allowed": sorted(_seccomp.BASELINE), "conditional": sorted(_seccomp.CONDITIONAL)}


def apply(policy: SandboxPolicy) -> dict[str, Any]:
    """Confine the calling process for good, in PLATFORM.md's order, and return the layers in force.

    Call it in the helper before the plugin is imported and before any thread starts. Each key of the
    result names a layer; a false value means it is not in force, and ``missing`` says why.

    :raises ConfinementError: when a layer in ``policy.require`` cannot be put in force.
    """
    sys.dont_write_bytecode = True  # a confined helper cannot write __pycache__; do not even try
    report: dict[str, Any] = {"rlimits": False, "netns": False, "no_new_privs": False, "landlock": False,
                              "caps_dropped": False, "uid": os.geteuid(), "seccomp": False, "missing": {}}

    def step(layer: str, fn: Callable[[], Any]) -> None:
        try:
            report[layer] = fn()
        except Exception as exc:  # noqa: BLE001 - each failure is reported, and fatal when required
            reason = str(exc) or type(exc).__name__
            report[layer] = False
            report["missing"][layer] = reason
            if layer in policy.require:
                raise ConfinementError(f"sandbox layer {layer!r} is required but could not be put in force: "
                                       f"{reason}; the plugin was not imported", layer=layer, report=report) from None

    # Preparation while nothing is confined: what later steps cannot read once Landlock is on.
    threads = _threads()
    cap_last = _caps.last_cap()
    plan, target = _uid_plan(policy)
    flt: Any = None

    def prepare_filter() -> None:
        nonlocal flt
        flt = _seccomp.build(pid=os.getpid(), network=policy.network, extra=policy.allowed_syscalls)

    try:
        prepare_filter()
        filter_error = None
    except Exception as exc:  # noqa: BLE001 - reported by the seccomp step
        filter_error = exc

    step("rlimits", lambda: _rlimits(policy, stay_root=target is None and os.geteuid() == 0))
    if policy.network:
        report["netns"] = "granted network"
    else:
        step("netns", lambda: _netns(threads == 1))
    step("no_new_privs", _no_new_privs)
    ports = sorted({port for _, port in policy.networks}) if policy.network else []
    step("landlock", lambda: _landlock.restrict(policy.read_paths, policy.write_paths, ports, scope=True))

    def privileges() -> bool:
        if target is not None:
            # The bounding set goes while CAP_SETPCAP is still there; setuid() then clears the rest.
            _caps.drop_bounding(cap_last)
            _caps.drop_uid(*target)
            report["uid"] = target[0]
            report["privileges"] = f"uid {target[0]} ({plan})"
        elif os.geteuid() == 0:
            report["privileges"] = {"method": "capabilities dropped, uid 0 kept", "why": plan,
                                    **_caps.drop_capabilities(cap_last)}
        elif not _caps.capabilities_empty():
            _caps.drop_capabilities(cap_last)
        if not _caps.capabilities_empty():
            raise RuntimeError("capabilities remain after the drop")
        return True

    step("caps_dropped", privileges)

    def seccomp() -> bool:
        if filter_error is not None:
            raise filter_error
        _seccomp.load(flt)
        if _prctl(_PR_GET_SECCOMP) != 2:
            raise RuntimeError("the filter was loaded but PR_GET_SECCOMP does not report filter mode")
        return True

    step("seccomp", seccomp)
    if threads > 1:
        report["threads_before"] = threads
    return report
