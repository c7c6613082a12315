"""The route path: the part of a request's path an app's router matches, which every guard decides on."""

from __future__ import annotations

from typing import Any, Mapping

from covet_pipe.errors import PluginValidationError

__all__ = ["check_paths", "route_path"]


def route_path(scope: Mapping[str, Any]) -> str:
    """Return ``scope["path"]`` less ``scope["root_path"]``, as Starlette's router computes it.

    A server run with a root path (``--root-path /api``) and a Starlette ``Mount("/api", ...)``
    both put the prefix in ``root_path`` *and* at the start of ``path`` (ASGI 2.3+); the app routes
    on what follows it. A guard that matched ``path`` would guard ``/api/admin`` while the app
    serves that request from its ``/admin`` route. Rules, as in ``starlette._utils.get_route_path``:

    - no ``root_path``, or a ``path`` that does not start with it: ``path`` unchanged;
    - ``path == root_path``: ``""`` (the mount point itself);
    - otherwise the prefix comes off only at a segment boundary (``/api`` + ``/x`` -> ``/x``;
      ``/apix`` stays ``/apix``).
    """
    path: str = scope.get("path", "/")
    root = scope.get("root_path")
    if not root or not path.startswith(root):
        return path
    if len(path) == len(root):
        return ""
    if path[len(root)] == "/":
        return path[len(root):]
    return path


def check_paths(plugin: Any, name: str, where: str, style: str | None, path: str | None) -> None:
    """A plugin's ``paths`` (the route paths its hooks run for): None, or strs that start with "/".

    :raises PluginValidationError: naming the plugin and showing a valid value.
    """
    paths = getattr(plugin, "paths", None)
    if paths is None:
        return
    example = 'paths = ("/metrics",) (exactly that path) or ("/api/",) (everything under /api/)'
    if isinstance(paths, str) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise PluginValidationError(
            f"plugin {name!r}{where}: paths must be a tuple of route paths starting with '/', got {paths!r}; "
            f"write {example}", plugin_name=name, path=path)
    if style == "call_next":
        raise PluginValidationError(
            f"plugin {name!r}{where}: paths scopes hook-style plugins; a call_next plugin checks "
            "request.path itself", plugin_name=name, path=path)
