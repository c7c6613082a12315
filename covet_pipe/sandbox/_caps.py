"""Giving up privileges: empty every capability set and lock the securebits, or switch to another uid."""

from __future__ import annotations

import ctypes
import os
import stat
from typing import Iterable

__all__ = ["drop_capabilities", "drop_bounding", "drop_uid", "readable_by_others", "capabilities_empty", "CapsError"]

_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_GET_SECUREBITS = 27
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_SETPCAP = 8

# securebits (include/uapi/linux/securebits.h)
SECBIT_NOROOT = 1 << 0
SECBIT_NOROOT_LOCKED = 1 << 1
SECBIT_NO_SETUID_FIXUP = 1 << 2
SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 3
SECBIT_KEEP_CAPS = 1 << 4
SECBIT_KEEP_CAPS_LOCKED = 1 << 5
SECBIT_NO_CAP_AMBIENT_RAISE = 1 << 6
SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED = 1 << 7

#: uid 0 gains nothing from exec or setuid, and no one can turn that back on (KEEP_CAPS stays off, locked)
LOCKED_SECUREBITS = (SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED
                     | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED)


class CapsError(OSError):
    """A capability or uid change was refused."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.prctl.restype = ctypes.c_int


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> int:
    res = _libc.prctl(option, arg2, arg3, 0, 0)
    if res < 0:
        err = ctypes.get_errno()
        raise CapsError(err, f"prctl({option}, {arg2}): {os.strerror(err)}")
    return int(res)


def last_cap() -> int:
    """The highest capability number this kernel knows (read it before Landlock hides /proc)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read())
    except OSError:
        return 63


def _capget() -> tuple[int, int, int]:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise CapsError(err, f"capget: {os.strerror(err)}")

    def join(name: str) -> int:  # the 64-bit set from its two 32-bit halves
        return int(getattr(data[0], name)) | (int(getattr(data[1], name)) << 32)
    return join("effective"), join("permitted"), join("inheritable")


def capabilities_empty() -> bool:
    """True when the effective, permitted and inheritable sets are all empty."""
    return _capget() == (0, 0, 0)


def drop_capabilities(cap_last: int) -> dict[str, object]:
    """Empty the bounding, ambient, inheritable, permitted and effective sets for good.

    The securebits are set and locked first (that needs CAP_SETPCAP, the last thing to go), so that
    uid 0 regains nothing through exec or setuid. After this ``setrlimit`` cannot raise a hard limit,
    and root's file access is just the owner's mode bits (Landlock does the rest).
    """
    have_setpcap = bool(_capget()[0] & (1 << _CAP_SETPCAP))
    securebits = 0
    if have_setpcap:
        drop_bounding(cap_last)
        _prctl(_PR_SET_SECUREBITS, LOCKED_SECUREBITS)
        securebits = _prctl(_PR_GET_SECUREBITS)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()  # all zero
    if _libc.capset(ctypes.byref(header), data) < 0:
        err = ctypes.get_errno()
        raise CapsError(err, f"capset to empty sets: {os.strerror(err)}")
    if not capabilities_empty():
        raise RuntimeError("capabilities remain after capset")
    return {"bounding_emptied": have_setpcap, "securebits": hex(securebits)}


def drop_bounding(cap_last: int) -> None:
    """Empty the bounding set (needs CAP_SETPCAP): no exec could ever grant a capability again."""
    for cap in range(cap_last + 1):
        _prctl(_PR_CAPBSET_DROP, cap)


def drop_uid(uid: int, gid: int) -> None:
    """Switch every uid and gid to ``uid``/``gid`` with no supplementary groups (clears root's capabilities)."""
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise CapsError(exc.errno, f"cannot switch to uid {uid}/gid {gid}: {exc.strerror}") from None
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise RuntimeError(f"uid switch to {uid} did not stick")


def readable_by_others(paths: Iterable[str]) -> str | None:
    """None when a stranger (an unrelated uid) can reach and read every path; else the first that it cannot.

    Conservative: only the "other" mode bits count (no groups, no ACLs).
    """
    for path in paths:
        path = os.path.realpath(path)
        parts = path.split(os.sep)
        for i in range(1, len(parts)):
            folder = os.sep.join(parts[:i]) or os.sep
            try:
                if not os.stat(folder).st_mode & stat.S_IXOTH:
                    return folder
            except OSError:
                return folder
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return path
        if not mode & stat.S_IROTH or (stat.S_ISDIR(mode) and not mode & stat.S_IXOTH):
            return path
    return None
