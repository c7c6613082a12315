"""The seed's ``covet.plugins``: PluginManager and PluginConfig."""

from covet_pipe.config import PluginConfig
from covet_pipe.manager import PluginManager

__all__ = ["PluginConfig", "PluginManager"]
