"""The pytest fixtures covet-pipe ships (``pytest11`` entry point ``covet_pipe.testing``; ``-p covet_pipe.testing``).

Each fixture is a factory a test calls with the plugin it means, and each cleans up after the test: plugins
shut down (a sandboxed one's helpers end), servers get SIGTERM. Nothing here runs unless a test asks for a
fixture, and what a fixture needs (the manager, the sandbox, the server) is imported when it is first used.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import pytest

if TYPE_CHECKING:
    from covet_pipe.testing._loaded import LoadedPlugin
    from covet_pipe.testing._served import ServedPlugins

__all__ = ["covet_build", "covet_plugin", "covet_server"]


@pytest.fixture
def covet_plugin() -> Iterator[Callable[..., LoadedPlugin]]:
    """``covet_plugin(PATH, sandbox=False, **config)`` or ``covet_plugin(entry_point=NAME)``: a started plugin.

    PATH is a ``.py`` file, a package folder or a ``.so``; it loads as ``covet-pipe serve --strict`` loads it
    (a ``sandbox = true`` manifest: in a confined helper). The result's ``request()`` sends a request through
    its chain; ``process_request()`` and ``process_response()`` call its hooks with real objects.
    A plugin that does not load fails the test with the loader's message.
    """
    from covet_pipe.testing._loaded import PluginLoadFailed, load_plugin

    started: list[LoadedPlugin] = []

    def load(path: str | Path | None = None, *, entry_point: str | None = None, sandbox: bool = False,
             **config: Any) -> LoadedPlugin:
        try:
            loaded = load_plugin(path, entry_point=entry_point, sandbox=sandbox, **config)
        except PluginLoadFailed as exc:
            failed = str(exc)       # failed outside the except: the report is the message, not a chain
        else:
            started.append(loaded)
            return loaded
        pytest.fail(failed, pytrace=False)

    yield load
    for loaded in reversed(started):
        loaded.close()


@pytest.fixture
def covet_server(tmp_path: Path) -> Iterator[Callable[..., ServedPlugins]]:
    """``covet_server(PLUGIN_DIR, ..., app=None, reload=False, args=())``: a real ``covet-pipe serve --strict``.

    It serves on a free 127.0.0.1 port (``.url``, ``.get()``, ``.request()``); ``app=None`` is an app
    answering 200 ``ok`` that echoes the request headers it saw as ``x-app-saw-NAME``. With ``reload=True``,
    ``.edit(FILE, TEXT, until=CHECK)`` rewrites a plugin and waits for a reply that passes CHECK.
    A server that does not start fails the test with its log.
    """
    from covet_pipe.testing._served import ServeFailed, start_serve

    started: list[ServedPlugins] = []

    def serve(*plugins: str | Path, app: str | None = None, reload: bool = False, args: Iterable[str] = (),
              workdir: str | Path | None = None) -> ServedPlugins:
        try:
            served = start_serve(Path(workdir) if workdir is not None else tmp_path / "covet-serve", plugins,
                                 app=app, reload=reload, args=args)
        except ServeFailed as exc:
            failed = str(exc)
        else:
            started.append(served)
            return served
        pytest.fail(failed, pytrace=False)

    yield serve
    for served in reversed(started):
        served.stop()


@pytest.fixture
def covet_build() -> Callable[[str | Path], Path]:
    """``covet_build(SOURCE)``: ``covet-pipe build SOURCE`` (a ``.c`` or ``.pyx``) when its ``.so`` is missing or older.

    Returns the ``.so`` beside the source; a failed build fails the test with the compiler's or the loader's
    message.
    """

    def build(source: str | Path) -> Path:
        src = Path(source)
        so = src.with_suffix(".so")
        if so.exists() and so.stat().st_mtime >= src.stat().st_mtime:
            return so
        done = subprocess.run([sys.executable, "-m", "covet_pipe", "build", str(src)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.fail(f"covet_build: covet-pipe build {src} exited {done.returncode}:\n{done.stdout}{done.stderr}",
                        pytrace=False)
        return so

    return build
