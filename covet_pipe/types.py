"""``covet_pipe.types``: Request, Response and PluginContext under one import."""

from covet_pipe._core import Headers, Request, RequestContext, Response
from covet_pipe.context import PluginContext

__all__ = ["Headers", "PluginContext", "Request", "RequestContext", "Response"]
