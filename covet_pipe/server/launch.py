"""Serving, decided: one process, or a supervisor of ``config.workers`` forked ones.

``covet_pipe.serve(app, ...)`` and ``covet-pipe serve`` come here. One process is
:func:`covet_pipe.server.listener.run_process`; several are
:func:`covet_pipe.server.workers.supervise`, whose workers each run that same function.
"""

from __future__ import annotations

from typing import Any

from covet_pipe.server.admin_port import admin_companions, admin_token
from covet_pipe.server.config import ServeConfig
from covet_pipe.server.listener import run_process
from covet_pipe.server.workers import supervise

__all__ = ["run", "serve"]


def run(app: Any, manager: Any = None, config: ServeConfig | None = None, *,
        plugin_dirs: list[str] | None = None) -> None:
    """Serve *app* until SIGTERM/SIGINT (blocking); several worker processes if ``config.workers > 1``."""
    config = config or ServeConfig()
    if config.admin is not None:
        admin_token(config)             # no token, no admin port: refused before anything starts
    if config.workers > 1:
        supervise(app, manager, config, plugin_dirs=plugin_dirs)
    else:
        run_process(app, manager, config, plugin_dirs=plugin_dirs, companions=admin_companions)


def serve(app: Any, manager: Any = None, *, host: str = "127.0.0.1", port: int = 8000,
          plugins: list[str] | None = None, **options: Any) -> None:
    """Serve *app* behind *manager*'s chain on covet-pipe's own listener (blocking).

    ``covet_pipe.serve(app, manager, host="127.0.0.1", port=8000, workers=2)``; the other
    keyword options are ServeConfig's (limits, timeouts, ``loop``, ``access_log`` ...).
    """
    config = ServeConfig.from_options(host=host, port=port, **options)
    run(app, manager, config, plugin_dirs=plugins)
