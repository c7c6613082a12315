"""The seccomp allowlist of a sandboxed helper, built with libseccomp (through the ``pyseccomp`` binding).

Default action: EPERM. The escape primitives on :data:`KILL_LIST` end the process with SIGSYS. A few calls
are allowed only with harmless arguments (``clone`` for threads, ``ioctl``, ``fcntl``, ``socket``, ``kill``,
``prlimit64``, ``sendto``/``sendmsg``). Files are left to Landlock: the filter cannot see paths.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import re
import socket
from typing import Any, Iterable

__all__ = ["KILL_LIST", "BASELINE", "CONDITIONAL", "GUARDED", "available", "resolve", "unknown_names", "build", "load"]

#: calls that end the process (SIGSYS) whatever the policy says; never re-allowed
KILL_LIST: frozenset[str] = frozenset({
    "execve", "execveat",                                    # start another program
    "ptrace", "process_vm_readv", "process_vm_writev",       # read or steer another process
    "pidfd_getfd", "process_madvise", "kcmp",
    "io_uring_setup", "io_uring_enter", "io_uring_register",  # a second syscall path seccomp cannot see
    "bpf", "userfaultfd", "perf_event_open",
    "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "chroot",
    "unshare", "setns",                                      # namespaces (the netns is set before the filter)
    "keyctl", "add_key", "request_key",
    "open_by_handle_at",                                     # the "shocker" escape past path checks
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
})

#: allowed with any arguments: what CPython, msgspec and blocking socket IO use; Landlock limits the paths
BASELINE: frozenset[str] = frozenset({
    # files (which ones: Landlock)
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "getdents", "getdents64",
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd", "chdir", "fchdir",
    "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "link", "linkat", "symlink", "symlinkat", "truncate", "ftruncate", "fallocate", "fsync", "fdatasync",
    "fadvise64", "flock", "dup", "dup2", "dup3", "pipe", "pipe2", "umask", "copy_file_range", "sendfile",
    # memory
    "mmap", "munmap", "mprotect", "mremap", "brk", "madvise", "msync", "mincore", "membarrier",
    # threads and time
    "futex", "futex_waitv", "set_robust_list", "rseq", "set_tid_address", "sched_yield", "sched_getaffinity",
    "getcpu", "arch_prctl", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
    "time", "alarm", "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime",
    "timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
    # signals to itself (kill/tgkill: conditional)
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending", "rt_sigtimedwait",
    "sigaltstack", "restart_syscall", "pause",
    # identity and accounting (read only)
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getgroups", "getpgrp", "getpgid", "getsid", "getrlimit", "getrusage", "times", "sysinfo", "uname",
    "capget", "getpriority", "getrandom", "wait4", "waitid",
    # polling and the IPC socket (new sockets: conditional)
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4",
    "recvfrom", "recvmsg", "recvmmsg", "shutdown", "getsockname", "getpeername", "getsockopt", "setsockopt",
    "connect",
    "exit", "exit_group",
})

#: allowed only with the arguments checked in :func:`build` (listing one in allowed_syscalls lifts the check)
CONDITIONAL: frozenset[str] = frozenset({
    "clone", "clone3", "ioctl", "fcntl", "socket", "socketpair", "kill", "tgkill", "prlimit64", "sendto",
    "sendmsg", "prctl",
})

#: why a call cannot be listed in allowed_syscalls: its argument check keeps another layer sound
GUARDED: dict[str, str] = {
    "clone": "it is allowed for threads only (CLONE_THREAD); a new process is never allowed",
    "clone3": "glibc falls back to clone; its flags are out of the filter's sight, so it would allow new processes",
    "fork": "a new process is never allowed",
    "vfork": "a new process is never allowed",
    "sendto": "it is allowed without a destination address and without MSG_FASTOPEN, which would connect "
              "to any TCP port past Landlock's connect rule (measured on Linux 6.18, Landlock ABI 7)",
    "sendmsg": "it is allowed without MSG_FASTOPEN, which would connect to any TCP port past Landlock's "
               "connect rule (measured on Linux 6.18, Landlock ABI 7)",
}

_CLONE_THREAD = 0x00010000
#: namespace flags: a thread must not ask for any (unshare and setns are killed anyway)
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x80
#: terminal and descriptor requests that read state or touch only the caller's own descriptor
SAFE_IOCTLS = {
    "TCGETS": 0x5401, "TIOCGWINSZ": 0x5413, "FIONREAD": 0x541B, "FIONBIO": 0x5421,
    "FIONCLEX": 0x5450, "FIOCLEX": 0x5451,
}
#: fcntl commands without F_SETOWN/F_SETSIG (which aim SIGIO at another process) or leases
SAFE_FCNTLS = (0, 1, 2, 3, 4, 5, 6, 7, 36, 37, 38, 1030, 1032, 1034)
#: prctl options that only read state, or name the calling thread
SAFE_PRCTLS = {"PR_GET_DUMPABLE": 3, "PR_SET_NAME": 15, "PR_GET_NAME": 16, "PR_GET_SECCOMP": 21,
               "PR_CAPBSET_READ": 23, "PR_GET_SECUREBITS": 27, "PR_GET_NO_NEW_PRIVS": 39}
_MSG_FASTOPEN = 0x20000000
_SOCK_TYPE_MASK = 0xF


def _load_binding() -> Any:
    """Import pyseccomp without letting ``ctypes.util.find_library`` spawn ``ldconfig`` in the helper."""
    original = ctypes.util.find_library
    sonames = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}

    def find(name: str) -> str | None:
        soname = sonames.get(name)
        if soname is not None:
            with contextlib.suppress(OSError):
                ctypes.CDLL(soname)
                return soname
        return original(name)

    ctypes.util.find_library = find
    try:
        import pyseccomp  # type: ignore[import-untyped]
    finally:
        ctypes.util.find_library = original
    lib = pyseccomp._libseccomp  # noqa: SLF001 - the binding leaves this one untyped
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    return pyseccomp


_binding: Any = None
_binding_error: str | None = None


def _sc() -> Any:
    global _binding, _binding_error
    if _binding is None and _binding_error is None:
        try:
            _binding = _load_binding()
        except (ImportError, OSError, RuntimeError, AttributeError) as exc:
            _binding_error = f"libseccomp is not usable: {exc}"
    if _binding is None:
        raise OSError(errno.ENOSYS, _binding_error or "libseccomp is not usable")
    return _binding


def available() -> str | None:
    """None when libseccomp can be used here; else why not."""
    try:
        _sc()
    except OSError as exc:
        return exc.strerror
    return None


def resolve(name: str) -> int | None:
    """The number of a syscall name on this architecture (negative: known to libseccomp, absent here).

    None when the name is unknown.
    """
    if not re.fullmatch(r"[a-z0-9_]{1,40}", name):
        return None
    nr = int(_sc()._libseccomp.seccomp_syscall_resolve_name(name.encode()))  # noqa: SLF001
    return None if nr == -1 else nr


def unknown_names(names: Iterable[str]) -> list[str]:
    """The names libseccomp does not know (when libseccomp is missing, those that are not even well formed)."""
    if available() is not None:
        return [n for n in names if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", n)]
    return [n for n in names if resolve(n) is None]


def build(*, pid: int, network: bool, extra: Iterable[str] = ()) -> Any:
    """A filter (not yet loaded) for process ``pid``: the baseline, the conditional rules, ``extra`` and the kill list.

    :param network: allow new TCP sockets (AF_INET/AF_INET6, SOCK_STREAM); Landlock limits the ports
    :param extra: names added to the allowlist as they are (names on :data:`KILL_LIST` are refused earlier)
    """
    sc = _sc()
    A = sc.Arg
    extra = set(extra)
    bad = sorted(extra & (KILL_LIST | set(GUARDED)))
    if bad:
        raise ValueError(f"{', '.join(bad)} can never be allowed (kill list or guarded)")
    flt = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # i386 / x32 entry points: another syscall table
    with contextlib.suppress(OSError):
        flt.set_attr(sc.Attr.CTL_TSYNC, 1)
    with contextlib.suppress(OSError):
        flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # binary tree: the allowlist is long

    def rule(action: int, name: str, *args: Any) -> None:
        nr = resolve(name)
        if nr is None or nr < 0:
            return  # not a syscall of this architecture (open, stat, poll ... on aarch64)
        flt.add_rule(action, nr, *args)

    for name in sorted(KILL_LIST):
        rule(sc.KILL_PROCESS, name)
    for name in sorted((BASELINE | extra)):
        rule(sc.ALLOW, name)
    conditional = CONDITIONAL - extra
    if "clone" in conditional:  # threads only: CLONE_THREAD set, no namespace flag; fork() gets EPERM
        rule(sc.ALLOW, "clone", A(0, sc.MASKED_EQ, _CLONE_THREAD | _CLONE_NEW, _CLONE_THREAD))
    if "clone3" in conditional:  # its flags sit in a struct the filter cannot read: glibc falls back to clone
        rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if "ioctl" in conditional:
        for request in SAFE_IOCTLS.values():
            rule(sc.ALLOW, "ioctl", A(1, sc.EQ, request))
    if "fcntl" in conditional:
        for cmd in SAFE_FCNTLS:
            rule(sc.ALLOW, "fcntl", A(1, sc.EQ, cmd))
    if "prctl" in conditional:
        for option in SAFE_PRCTLS.values():
            rule(sc.ALLOW, "prctl", A(0, sc.EQ, option))
    if "socketpair" in conditional:
        rule(sc.ALLOW, "socketpair", A(0, sc.EQ, socket.AF_UNIX))
    if "socket" in conditional and network:
        for family in (socket.AF_INET, socket.AF_INET6):
            for proto in (0, socket.IPPROTO_TCP):  # not MPTCP or SCTP, which Landlock's TCP rules do not cover
                rule(sc.ALLOW, "socket", A(0, sc.EQ, family), A(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, socket.SOCK_STREAM),
                     A(2, sc.EQ, proto))
    if "kill" in conditional:
        rule(sc.ALLOW, "kill", A(0, sc.EQ, pid))
    if "tgkill" in conditional:
        rule(sc.ALLOW, "tgkill", A(0, sc.EQ, pid))
    if "prlimit64" in conditional:  # read its own limits; setting one (new_limit != NULL) is refused
        for target in (0, pid):
            rule(sc.ALLOW, "prlimit64", A(0, sc.EQ, target), A(2, sc.EQ, 0))
    if "sendto" in conditional:  # no destination address (a path datagram socket) and no TCP Fast Open
        rule(sc.ALLOW, "sendto", A(3, sc.MASKED_EQ, _MSG_FASTOPEN, 0), A(4, sc.EQ, 0))
    if "sendmsg" in conditional:
        rule(sc.ALLOW, "sendmsg", A(2, sc.MASKED_EQ, _MSG_FASTOPEN, 0))
    return flt


def load(flt: Any) -> None:
    """Install the filter on the calling process (all its threads). no_new_privs must be set."""
    flt.load()

