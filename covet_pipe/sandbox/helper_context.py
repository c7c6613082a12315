"""The PluginContext a sandboxed plugin's initialize() gets inside its helper."""

from __future__ import annotations

import logging
import sys
from typing import Any

from covet_pipe.errors import ServiceNotFoundError

__all__ = ["HelperContext"]


class HelperContext:
    """Settings and a logger (to the helper's stderr, which the host logs); no services."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.plugin_name = name
        self.config = dict(config)
        self.logger = logging.getLogger(f"covet_pipe.plugins.{name}")
        if not self.logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)

    def get_service(self, name: str) -> Any:
        raise ServiceNotFoundError(
            f"sandboxed plugin {self.plugin_name!r} cannot use service {name!r}: services live in the "
            "host process; run the plugin in-process (sandbox = false) if it needs them", plugin_name=name)

    def provide_service(self, name: str, service: Any) -> None:
        raise ServiceNotFoundError(f"sandboxed plugin {self.plugin_name!r} cannot offer services",
                                   plugin_name=name)
