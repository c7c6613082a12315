"""Landlock through ctypes: file, TCP-port and scope rules for the calling process (Linux >= 5.13)."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from typing import Iterable

__all__ = ["abi_version", "restrict", "LandlockError", "READ_ACCESS", "WRITE_ACCESS"]

# Landlock's three syscalls have the same numbers in the generic table (aarch64, riscv64) and on x86_64.
_SYSCALLS = {
    "x86_64": (444, 445, 446),
    "aarch64": (444, 445, 446),
    "riscv64": (444, 445, 446),
}

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem access rights and the ABI that introduced them (include/uapi/linux/landlock.h).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13        # ABI 2
FS_TRUNCATE = 1 << 14     # ABI 3
FS_IOCTL_DEV = 1 << 15    # ABI 5

NET_BIND_TCP = 1 << 0     # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4

SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
#: rights that a rule on a regular file (not a folder) may carry
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

#: what a read-only grant allows: read files, list folders, map code (execve itself is killed by seccomp)
READ_ACCESS = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
#: what a writable grant adds: create, remove, rename inside, truncate; never device nodes
WRITE_ACCESS = (READ_ACCESS | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG
                | FS_MAKE_SYM | FS_MAKE_FIFO | FS_REFER | FS_TRUNCATE) & ~FS_EXECUTE


class LandlockError(OSError):
    """Landlock is missing or refused a ruleset; ``errno`` says why."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _numbers() -> tuple[int, int, int]:
    machine = platform.machine()
    try:
        return _SYSCALLS[machine]
    except KeyError:
        raise LandlockError(errno.ENOSYS, f"Landlock syscall numbers are not known for {machine}") from None


def _call(nr: int, *args: object) -> int:
    res = _libc.syscall(ctypes.c_long(nr), *args)
    if res < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, os.strerror(err))
    return int(res)


def abi_version() -> int:
    """The Landlock ABI of the running kernel; 0 when it has none or it is disabled."""
    try:
        create, _, _ = _numbers()
        return _call(create, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except LandlockError:
        return 0


def restrict(read_paths: Iterable[str], write_paths: Iterable[str], connect_ports: Iterable[int] | None,
             *, scope: bool = True) -> dict[str, object]:
    """Confine the calling process (and its future threads) for good, and say what was enforced.

    Every filesystem right the ABI knows is handled: only ``read_paths`` (read-only) and ``write_paths``
    (read-write) stay reachable. ``connect_ports`` None leaves TCP alone (the caller relies on a network
    namespace or grants everything); a list allows TCP connect to exactly those ports and binding none.
    The paths are opened here, so call it before giving up the privileges needed to open them.
    no_new_privs must already be set.

    :raises LandlockError: when the kernel lacks Landlock or refuses a rule (a missing path names it).
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockError(errno.EOPNOTSUPP, "the kernel has no Landlock (or it is disabled at boot)")
    create, add_rule, restrict_self = _numbers()
    handled_fs = _FS_BY_ABI.get(abi, _FS_BY_ABI[5])
    net = abi >= 4 and connect_ports is not None
    attr = _RulesetAttr(handled_fs, (NET_BIND_TCP | NET_CONNECT_TCP) if net else 0,
                        (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if scope and abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _call(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for access, paths in ((READ_ACCESS, read_paths), (WRITE_ACCESS | READ_ACCESS, write_paths)):
            for path in paths:
                _add_path(add_rule, ruleset, path, access & handled_fs)
        if net:
            for port in connect_ports or ():
                rule = _NetPortAttr(NET_CONNECT_TCP, int(port))
                _call(add_rule, ruleset, _RULE_NET_PORT, ctypes.byref(rule), ctypes.c_uint32(0))
        _call(restrict_self, ruleset, ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return {"abi": abi, "fs": True, "net": net, "scope": bool(attr.scoped)}


def _add_path(add_rule: int, ruleset: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise LandlockError(exc.errno, f"cannot open {path} for a Landlock rule: {exc.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):  # fstat works on O_PATH descriptors
            access &= _FILE_RIGHTS  # a rule on a file may only carry file rights (else EINVAL)
        rule = _PathBeneathAttr(access, fd)
        try:
            _call(add_rule, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
        except LandlockError as exc:
            raise LandlockError(exc.errno, f"Landlock refused the rule for {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
