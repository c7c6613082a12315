"""What a helper inherits and what of its output reaches the host's log.

A helper holds its channel and the standard three descriptors, nothing else, whichever loop (asyncio or
uvloop) started it; its stderr reaches the host log escaped, so a plugin cannot forge log lines; its log
lines carry the plugin's name from the first one; a limit too small to start an interpreter is refused up
front, and a helper that dies at start is reported with its last output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
import uvloop

from covet_pipe import PluginConfig, PluginManager
from covet_pipe.errors import ConfigError, PluginLoadError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

NOISY = '''
import sys
from covet_pipe import MiddlewarePlugin

print("forged\\r1.2.3.4 - GET /admin 200 \\x1b[2Jgone\\nsecond", file=sys.stderr, flush=True)

class Noisy(MiddlewarePlugin):
    name = "noisy"
    version = "1.0.0"
    def process_request(self, request, ctx):
        return None

def create_plugin(config):
    return Noisy()
'''

DIES = '''
import os, sys
print("cannot reach the license server at 10.0.0.1", file=sys.stderr, flush=True)
os._exit(7)
'''


def _fds(pid: int) -> dict[int, str]:
    base = f"/proc/{pid}/fd"
    return {int(n): os.readlink(f"{base}/{n}") for n in os.listdir(base)}


async def _load(path: Path, config: PluginConfig | None = None) -> tuple[PluginManager, int]:
    manager = PluginManager(config or PluginConfig(entry_points=False))
    await manager.load_plugin_from_path(str(path), sandbox=True)
    await manager.initialize_all()
    health = await manager.get_health_status()
    [pid] = [h["pid"] for p in health["plugins"].values() for h in p["sandbox"]["helpers"]]
    return manager, pid


@pytest.mark.parametrize("runner", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_a_helper_holds_only_its_channel_and_the_standard_three(tmp_path, runner):
    plugin = tmp_path / "noisy.py"
    plugin.write_text(NOISY)

    async def main():
        manager, pid = await _load(plugin)
        try:
            fds = _fds(pid)
            channel = int(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2])
        finally:
            await manager.shutdown_all()
        return fds, channel

    fds, channel = runner(main())
    inherited = {n: t for n, t in fds.items() if n in (0, 1, 2, channel)}
    own = sorted(t.split(":")[0] for n, t in fds.items() if n not in inherited)
    # besides what it inherits, only the helper's own event loop for async hooks: an epoll, a wake-up pair
    assert own == ["anon_inode", "socket", "socket"], (channel, fds)
    assert fds[3] == "anon_inode:[eventpoll]", fds
    assert fds[0] == fds[1] == "/dev/null"
    assert fds[channel].startswith("socket:")
    assert fds[2].startswith(("pipe:", "socket:"))


def test_a_plugins_stderr_reaches_the_log_escaped_under_its_name(tmp_path, caplog):
    plugin = tmp_path / "noisy.py"
    plugin.write_text(NOISY)
    caplog.set_level(logging.INFO)

    async def main():
        manager, _ = await _load(plugin)
        await manager.shutdown_all()

    asyncio.run(main())
    relayed = [r for r in caplog.records if r.getMessage().startswith("[sandbox pid ")]
    texts = [r.getMessage().split("] ", 1)[1] for r in relayed]
    # a bare CR (which would overwrite the line on a terminal) and ESC arrive escaped; a newline starts a
    # new record, which carries the helper's prefix and the plugin's logger like the first
    assert texts == ["forged\\r1.2.3.4 - GET /admin 200 \\x1b[2Jgone", "second"], texts
    assert {r.name for r in relayed} == {"covet_pipe.plugins.noisy"}
    assert all(ch.isprintable() for r in relayed for ch in r.getMessage())
    assert not [r for r in caplog.records if r.name.endswith(".?")]


def test_a_helper_that_dies_at_start_is_reported_with_its_last_output(tmp_path):
    plugin = tmp_path / "dies.py"
    plugin.write_text(DIES)

    async def main():
        manager = PluginManager(PluginConfig(entry_points=False))
        with pytest.raises(PluginLoadError) as err:
            await manager.load_plugin_from_path(str(plugin), sandbox=True)
        return str(err.value)

    message = asyncio.run(main())
    assert "exited with status 7" in message, message
    assert "cannot reach the license server at 10.0.0.1" in message, message
    assert "see the log above" not in message


@pytest.mark.parametrize("limit", ["5MB", 5 * 1024 * 1024, "10MiB"])
def test_a_memory_limit_too_small_for_an_interpreter_is_refused_with_the_minimum(tmp_path, limit):
    with pytest.raises(ConfigError, match=r"memory_limit: .* below the 16 MiB .* raise it"):
        PluginConfig(memory_limit=limit)
