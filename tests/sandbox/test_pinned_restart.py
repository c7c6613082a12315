"""A pinned sandboxed plugin (``PluginConfig.plugin_hashes``) is checked again before each helper starts.

A helper reads the plugin's file when it starts, so a restart (after a crash) would run whatever the file
holds by then: the supervisor checks the pin first. Unchanged, the plugin restarts and serves; changed, the
restart is refused and the plugin is quarantined, its place answered 503 (fail closed) with the pin's
message in its health; the rest of the pipeline serves on.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from covet_pipe import PluginConfig
from covet_pipe.pinning import path_hash
from tests.sandbox._site import PLUGINS, assert_unavailable, gone
from tests.sandbox._site import no_helper_outlives_its_test, site  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")


def test_a_pinned_sandboxed_plugin_restarts_as_pinned_and_a_changed_one_is_refused(site: Any,
                                                                                  tmp_path: Path) -> None:
    plugin = tmp_path / "benign.py"
    shutil.copyfile(PLUGINS / "benign.py", plugin)
    pinned = path_hash(plugin)
    with site(PluginConfig(plugin_hashes={"benign": pinned})) as s:
        assert s.run(s.manager.load_plugin_from_path(str(plugin), sandbox=True)) == ["benign"]
        assert s.get("/").headers["x-sandbox-state"] == "hello-/"
        [first] = s.pids("benign")
        os.kill(first, signal.SIGKILL)               # unchanged: it restarts and serves
        assert gone(first)
        [second] = s.wait_restarted("benign", [first])
        assert s.get("/again").headers["x-sandbox-pid"] == str(second)

        plugin.write_text(plugin.read_text() + "\n# changed after it was pinned\n")
        actual = path_hash(plugin)
        os.kill(second, signal.SIGKILL)              # changed: the restart is refused
        assert gone(second)
        sb = s.wait("the restart to be refused", lambda: (lambda b: b if b["quarantined"] else None)(
            s.sandbox("benign")))
        assert f"its content hash is {actual}, but plugin_hashes pins 'benign' to {pinned}" in sb["quarantined"]
        assert sb["helpers"] == []
        assert_unavailable(s.get("/after"))         # its place fails closed; Outer's hook still ran
        assert s.outer.responses >= 3
