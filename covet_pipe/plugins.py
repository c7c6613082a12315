"""``covet_pipe.plugins``: PluginManager and PluginConfig under one import."""

from covet_pipe.config import PluginConfig
from covet_pipe.manager import PluginManager

__all__ = ["PluginConfig", "PluginManager"]
