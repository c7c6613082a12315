"""A served pipeline for the sandbox tests: a PluginManager with a trusted in-process plugin (``Outer``) in
front, served by a real uvicorn, plugins loaded sandboxed on the server's loop, and the checks that no helper
or cgroup outlives a test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, PluginConfig, PluginManager, wrap
from tests._helpers import lifespan

PLUGINS = Path(__file__).parent / "plugins"
#: how long a test waits for a helper to be restarted (backoff is 0.1-0.4 s, a start about 0.2 s)
RESTART_WAIT = 15.0


class Outer(MiddlewarePlugin):
    """Trusted, in-process, first in the chain: shows the rest of the pipeline keeps working."""

    name = "outer"
    version = "1.0.0"
    priority = 5

    def __init__(self) -> None:
        self.requests = 0
        self.responses = 0

    def process_request(self, request: Any, ctx: Any) -> None:
        self.requests += 1

    def process_response(self, response: Any, ctx: Any) -> None:
        self.responses += 1
        response.headers.set("x-outer", str(self.responses))


async def app(scope: dict, receive: Any, send: Any) -> None:
    """Echoes what it saw (path, x-seen) as JSON and sends an x-drop-me header for plugins to remove."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    headers = dict(scope["headers"])
    body = json.dumps({"path": scope["path"], "seen": headers.get(b"x-seen", b"").decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-drop-me", b"1"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Site:
    """A served pipeline: HTTP to it, and coroutines run on its event loop (where the helpers live)."""

    def __init__(self, served: Any, manager: PluginManager, outer: Outer) -> None:
        self.served = served
        self.manager = manager
        self.outer = outer
        self.http = httpx.Client(base_url=served.url, timeout=20)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.served.loop).result(timeout)

    def load(self, name: str) -> str:
        names = self.run(self.manager.load_plugin_from_path(str(PLUGINS / name), sandbox=True))
        assert len(names) == 1
        return names[0]

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def health(self, name: str) -> dict[str, Any]:
        return self.run(self.manager.get_health_status())["plugins"][name]

    def sandbox(self, name: str) -> dict[str, Any]:
        return self.health(name)["sandbox"]

    def pids(self, name: str) -> list[int]:
        return [h["pid"] for h in self.sandbox(name)["helpers"]]

    def wait(self, what: str, cond: Callable[[], Any], timeout: float = RESTART_WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def wait_restarted(self, name: str, old: list[int]) -> list[int]:
        """Wait (bounded) until the plugin serves again from helper(s) other than *old*."""
        def restarted() -> list[int] | None:
            sb = self.sandbox(name)
            pids = [h["pid"] for h in sb["helpers"]]
            return pids if sb["state"] == "serving" and pids and not set(pids) & set(old) else None
        return self.wait(f"{name!r} to restart (old helpers {old})", restarted)


@pytest.fixture
def site(serve: Any) -> Iterator[Callable[..., Any]]:
    sites: list[Site] = []

    @contextlib.contextmanager
    def _site(config: PluginConfig | None = None) -> Iterator[Site]:
        manager = PluginManager(config or PluginConfig())
        outer = Outer()
        manager.register(outer)
        with serve(wrap(app, manager)) as served:
            s = Site(served, manager, outer)
            sites.append(s)
            try:
                yield s
            finally:
                s.http.close()

    yield _site


@pytest.fixture(autouse=True)
def no_helper_outlives_its_test() -> Iterator[None]:
    yield
    left = my_helpers()
    assert all(gone(pid, 10) for pid in left), f"helpers still running after the test: {left}"
    groups = my_cgroups()
    assert not groups, f"cgroups of this test's helpers left behind: {groups}"


def my_cgroups() -> list[str]:
    """cgroup folders the supervisor made for this process's helpers (named '<host pid>-<pid>-<i>')."""
    out = []
    for controller in ("cpu", "memory", "pids"):
        parent = f"/sys/fs/cgroup/{controller}/covet-pipe"
        if os.path.isdir(parent):
            out += [f"{parent}/{g}" for g in os.listdir(parent) if g.startswith(f"{os.getpid()}-")]
    return out


def gone(pid: int, timeout: float = 5.0) -> bool:
    """True once process *pid* (a helper this test started) no longer exists (reaped by its parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/status") as f:
                state = next(line for line in f if line.startswith("State:"))
            if "zombie" in state:
                return True
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            return True
        time.sleep(0.02)
    return False


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def my_helpers() -> set[int]:
    """Helper processes that this test process started and that still exist."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"covet_pipe.sandbox.helper_main" in cmd:
            out.add(int(entry))
    return out


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json() == {"error": "Service Unavailable"}
    assert "Traceback" not in r.text
    assert r.headers["x-outer"]          # the in-process plugin's response hook still ran
