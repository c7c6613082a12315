"""covet-pipe's own listener and ``covet_pipe.serve``.

Here: the listener, workers, launch and ServeConfig, the protocol chain (:mod:`.protocol_chain`) and
the PROXY layer (:mod:`.proxy`); each protocol is a package, :mod:`.http11` and :mod:`.resp`.
"""

from __future__ import annotations

from typing import Any

from covet_pipe.server.config import ServeConfig

__all__ = ["Listener", "ServeConfig", "run", "serve"]


def __getattr__(name: str) -> Any:  # the listener imports uvloop and httptools: only when asked
    if name in ("serve", "run"):
        from covet_pipe.server import launch
        return getattr(launch, name)
    if name == "Listener":
        from covet_pipe.server import listener
        return listener.Listener
    raise AttributeError(f"module 'covet_pipe.server' has no attribute {name!r}")
