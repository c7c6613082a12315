"""The route path: the part of a request's path an app's router matches, which every guard decides on."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["route_path"]


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
