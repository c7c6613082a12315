"""The operator decides what runs in-process: a plugin's own manifest cannot switch its sandbox off.

``sandbox_enabled=True`` is the operator's word that discovered plugins are untrusted; the manifest ships with
the plugin, so ``sandbox = false`` in it is ignored (with a log line that says how to trust the file), and only
the operator's ``trusted_paths`` lets a file or folder run in-process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import pytest

from covet_pipe import PluginConfig, PluginManager
from covet_pipe.errors import ConfigError

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

PLUGIN = '''
import os
from covet_pipe import MiddlewarePlugin

class WhereAmI(MiddlewarePlugin):
    name = "{name}"
    version = "1.0.0"
    def process_response(self, response, ctx):
        response.headers.set("x-pid", str(os.getpid()))

def create_plugin(config):
    return WhereAmI()
'''


def _pids(manager: PluginManager) -> dict[str, bool]:
    """plugin name -> runs sandboxed (in a helper process)."""
    return {p["name"]: bool(p["metadata"].get("sandboxed")) for p in manager.list_plugins()}


def _write(folder, name: str, manifest: str | None) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(PLUGIN.format(name=name))
    if manifest is not None:
        (folder / f"{name}.covet-plugin.toml").write_text(manifest)


def test_a_manifest_cannot_lift_the_operators_sandbox(tmp_path, caplog):
    untrusted = tmp_path / "untrusted"
    _write(untrusted, "sneaky", "sandbox = false\n")
    _write(untrusted, "plain", None)

    async def main():
        manager = PluginManager(PluginConfig(plugin_paths=[str(untrusted)], sandbox_enabled=True,
                                             entry_points=False))
        report = await manager.load_plugins()
        await manager.initialize_all()
        try:
            return report, _pids(manager)
        finally:
            await manager.shutdown_all()

    report, sandboxed = asyncio.run(main())
    assert sorted(report.loaded) == ["plain", "sneaky"], report.failed
    assert sandboxed == {"plain": True, "sneaky": True}
    [line] = [r for r in caplog.records if "sandbox = false" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "trusted_paths" in line.getMessage() and "sneaky" in line.getMessage()


def test_trusted_paths_run_in_process_under_sandbox_enabled(tmp_path):
    trusted = tmp_path / "ours"
    untrusted = tmp_path / "theirs"
    _write(trusted, "own", None)
    _write(untrusted, "foreign", None)

    async def main():
        manager = PluginManager(PluginConfig(plugin_paths=[str(trusted), str(untrusted)], sandbox_enabled=True,
                                             trusted_paths=[str(trusted)], entry_points=False))
        await manager.load_plugins()
        await manager.initialize_all()
        try:
            return _pids(manager)
        finally:
            await manager.shutdown_all()

    assert asyncio.run(main()) == {"own": False, "foreign": True}


def test_a_manifest_may_still_ask_for_a_sandbox_the_operator_did_not(tmp_path):
    folder = tmp_path / "plugins"
    _write(folder, "careful", "sandbox = true\n")

    async def main():
        manager = PluginManager(PluginConfig(plugin_paths=[str(folder)], entry_points=False))
        await manager.load_plugins()
        await manager.initialize_all()
        try:
            return _pids(manager)
        finally:
            await manager.shutdown_all()

    assert asyncio.run(main()) == {"careful": True}


def test_trusted_paths_must_be_a_list_of_paths():
    with pytest.raises(ConfigError, match=r"trusted_paths: expected a list of paths"):
        PluginConfig(trusted_paths="./ours")
    assert PluginConfig(trusted_paths=["~/x"]).trusted_paths == [os.path.expanduser("~/x")]
