"""Hostile (and a few benign) plugin actions, run only inside a confined child by driver.py.

Each case returns plain data: {"ok": True, ...} when the action succeeded, or the error it met
({"ok": False, "errno": 13, "error": "PermissionError: ..."}). Cases that trip a kill rule never
return: the test sees the child die with SIGSYS. Every process a case targets was started by the test.
"""

import ctypes
import errno
import os
import socket
import threading
import time

_libc = ctypes.CDLL(None, use_errno=True)


def _failed(exc: BaseException) -> dict:
    return {"ok": False, "errno": getattr(exc, "errno", None), "error": f"{type(exc).__name__}: {exc}"}


def _attempt(fn) -> dict:
    try:
        out = fn()
    except (OSError, MemoryError, RuntimeError, ValueError) as exc:
        return _failed(exc)
    return {"ok": True, **(out or {})}


def read_file(path: str) -> dict:
    def go():
        with open(path, "rb") as f:
            return {"data": f.read(64).decode("latin-1")}
    return _attempt(go)


def write_file(path: str, data: str = "pwned") -> dict:
    def go():
        with open(path, "w") as f:
            f.write(data)
    return _attempt(go)


def chmod_file(path: str) -> dict:
    return _attempt(lambda: os.chmod(path, 0o777))


def tcp_connect(host: str, port: int) -> dict:
    def go():
        with socket.create_connection((host, port), timeout=3) as s:
            s.sendall(b"hello from the sandbox")
    return _attempt(go)


def tcp_fastopen(host: str, port: int) -> dict:
    """Connect by sending data with MSG_FASTOPEN (no connect() call at all)."""
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.sendto(b"hello via fast open", socket.MSG_FASTOPEN, (host, port))
    return _attempt(go)


def udp_send(host: str, port: int) -> dict:
    def go():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"hello", (host, port))
    return _attempt(go)


def unix_connect(address: str) -> dict:
    """Connect to a unix socket: a path, or an abstract name when it starts with '@'."""
    def go():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect("\0" + address[1:] if address.startswith("@") else address)
            s.sendall(b"hello from the sandbox")
    return _attempt(go)


def raw_syscall(nr: int, args: list | None = None) -> dict:
    args = [ctypes.c_long(a) for a in (args or [])]
    res = _libc.syscall(ctypes.c_long(nr), *args)
    err = ctypes.get_errno() if res == -1 else 0
    return {"ok": res != -1, "return": res, "errno": err}


def exec_shell() -> dict:
    return _attempt(lambda: os.execv("/bin/sh", ["sh", "-c", "echo pwned"]))


def run_subprocess() -> dict:
    import subprocess

    def go():
        out = subprocess.run(["/bin/sh", "-c", "echo pwned"], capture_output=True, timeout=5)
        return {"stdout": out.stdout.decode()}
    return _attempt(go)


def fork_bomb(limit: int = 200) -> dict:
    made = 0
    try:
        for _ in range(limit):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            made += 1
            os.waitpid(pid, 0)
    except OSError as exc:
        return {"ok": False, "forks": made, **_failed(exc)}
    return {"ok": True, "forks": made}


def thread_bomb(limit: int = 500) -> dict:
    stop = threading.Event()
    threads = []
    error = None
    try:
        for _ in range(limit):
            t = threading.Thread(target=stop.wait)
            t.start()
            threads.append(t)
    except RuntimeError as exc:
        error = f"{type(exc).__name__}: {exc}"
    stop.set()
    for t in threads:
        t.join()
    return {"ok": error is None, "threads": len(threads), "error": error}


def ptrace_attach(pid: int) -> dict:
    PTRACE_ATTACH = 16
    _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    res = _libc.ptrace(PTRACE_ATTACH, pid, None, None)
    return {"ok": res == 0, "errno": ctypes.get_errno()}


def signal_process(pid: int, sig: int = 15) -> dict:
    return _attempt(lambda: os.kill(pid, sig))


def tiocsti(fd: int, text: str = "X") -> dict:
    import fcntl
    import termios

    def go():
        for ch in text.encode():
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([ch]))
    return _attempt(go)


def raise_rlimit() -> dict:
    import resource

    def go():
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return {"now": resource.getrlimit(resource.RLIMIT_AS)}
    return _attempt(go)


def allocate(nbytes: int, touch: bool = True) -> dict:
    def go():
        block = bytearray(nbytes)
        if touch:  # bytearray zero-fills, but make sure every page is really written
            for i in range(0, nbytes, 4096):
                block[i] = 1
        return {"allocated": len(block)}
    return _attempt(go)


def spin(seconds: float | None = None) -> dict:
    """Burn CPU forever (or for ``seconds`` of wall time) and report the CPU time it got."""
    start, cpu0 = time.monotonic(), time.process_time()
    while seconds is None or time.monotonic() - start < seconds:
        pass
    return {"ok": True, "wall": time.monotonic() - start, "cpu": time.process_time() - cpu0}


def segfault() -> dict:
    ctypes.string_at(0)
    return {"ok": True}


def exit_now(code: int) -> dict:
    os._exit(code)


def sleep(seconds: float) -> dict:
    time.sleep(seconds)
    return {"ok": True}


def benign(read_path: str, write_path: str) -> dict:
    """What an honest plugin does: import, read its grant, write its grant, use threads, sleep, hash."""
    import hashlib
    import json

    import msgspec
    out: dict = {}
    with open(read_path) as f:
        out["read"] = f.read()
    with open(write_path, "w") as f:
        f.write("written by the sandbox")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(i * i)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["threads"] = sorted(results)
    out["msgspec"] = msgspec.json.decode(msgspec.json.encode({"a": [1, 2]}))
    out["json"] = json.dumps({"b": 1})
    out["sha"] = hashlib.sha256(b"x").hexdigest()[:8]
    out["random"] = len(os.urandom(8))
    time.sleep(0.01)
    out["pid"] = os.getpid()
    out["isatty"] = os.isatty(1)
    try:
        os.kill(os.getpid(), 0)  # signalling itself stays allowed
        out["self_signal"] = True
    except OSError as exc:
        out["self_signal"] = errno.errorcode.get(exc.errno, str(exc.errno))
    return {"ok": True, **out}


def stat_path(path: str) -> dict:
    """Metadata only (exists, size): Landlock does not cover stat, so this is a documented limit."""
    return _attempt(lambda: {"size": os.stat(path).st_size})
