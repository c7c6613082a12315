"""covet-pipe: a Cython-compiled, embeddable ASGI middleware pipeline with plugins."""

from __future__ import annotations

from typing import Any

try:
    from covet_pipe import _core
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "covet_pipe's compiled dispatch core (covet_pipe._core) is not built: install the package "
        "with 'pip install .' (or, in a checkout, 'make build' / "
        "'python setup.py build_ext --inplace'), which compiles it with Cython"
    ) from exc

from covet_pipe._core import (
    CONTINUE,
    CallNextRequest,
    Headers,
    MiddlewareAction,
    Request,
    RequestContext,
    Response,
    Snapshot,
    StreamedResponse,
)
from covet_pipe.admin import AdminApp, admin_app
from covet_pipe.asgi import Pipeline, wrap
from covet_pipe.config import PluginConfig
from covet_pipe.context import PluginContext
from covet_pipe.discovery import LoadReport
from covet_pipe.errors import (
    ClientDisconnected,
    ConfigError,
    CovetPipeError,
    DependencyCycleError,
    DependencyError,
    PluginError,
    PluginLoadError,
    PluginNotFoundError,
    PluginValidationError,
    ResponseStartedError,
    ServiceNotFoundError,
    StrictError,
)
from covet_pipe.manager import ChainEntry, PluginManager
from covet_pipe.plugin import (
    AuthPlugin,
    MiddlewarePlugin,
    Plugin,
    ProtocolPlugin,
    StoragePlugin,
)
from covet_pipe.routing import route_path
from covet_pipe.server.config import ServeConfig

__version__ = "0.1.0"


def serve(app: Any, manager: PluginManager | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          plugins: list[str] | None = None, **options: Any) -> None:
    """Serve *app* behind *manager*'s chain on covet-pipe's own listener (blocking until SIGTERM/SIGINT).

    ``covet_pipe.serve(app, manager, host="127.0.0.1", port=8000, workers=2)``; the other keyword
    options are :class:`ServeConfig`'s (limits, timeouts, ``trusted_proxies``, ``loop`` ...).
    """
    from covet_pipe.server.launch import serve as _serve   # uvloop and httptools load only here
    _serve(app, manager, host=host, port=port, plugins=plugins, **options)


def get_include() -> str:
    """The folder holding covet_plugin.h, for building native plugins (C: ``-I``).

    Cython plugins cimport ``covet_pipe.covet_plugin``, found through the installed package.
    """
    import os
    return os.path.join(os.path.dirname(__file__), "include")

__all__ = [
    "AdminApp",
    "AuthPlugin",
    "CONTINUE",
    "CallNextRequest",
    "ChainEntry",
    "ClientDisconnected",
    "ConfigError",
    "CovetPipeError",
    "DependencyCycleError",
    "DependencyError",
    "Headers",
    "LoadReport",
    "MiddlewareAction",
    "MiddlewarePlugin",
    "Pipeline",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "PluginError",
    "PluginLoadError",
    "PluginManager",
    "PluginNotFoundError",
    "PluginValidationError",
    "ProtocolPlugin",
    "Request",
    "RequestContext",
    "Response",
    "ResponseStartedError",
    "ServeConfig",
    "ServiceNotFoundError",
    "Snapshot",
    "StoragePlugin",
    "StreamedResponse",
    "StrictError",
    "admin_app",
    "get_include",
    "route_path",
    "serve",
    "wrap",
]
