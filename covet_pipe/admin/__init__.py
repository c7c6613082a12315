"""The management API: an ASGI app of its own over a PluginManager (``covet_pipe.admin_app``)."""

from __future__ import annotations

from covet_pipe.admin.app import AdminApp, admin_app

__all__ = ["AdminApp", "admin_app"]
