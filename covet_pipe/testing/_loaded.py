"""A plugin loaded as the server loads it (in-process, sandboxed or native), driven from a synchronous test.

The manager and its plugins live on an event loop of their own, so a sandboxed plugin's helper and a
native plugin's instance stay bound to one loop from load to shutdown, whatever the test does between.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

from covet_pipe._core import Headers, Request, Response, make_request_context
from covet_pipe.testing import call

__all__ = ["Exchange", "LoadedPlugin", "PluginLoadFailed", "load_plugin"]

Kind = Literal["python", "sandboxed", "native"]


class PluginLoadFailed(Exception):
    """A plugin did not load or start; the message says which file and what the loader said to fix."""


@dataclass
class Exchange:
    """One request through the plugin's chain: what the client got, and what reached the app."""

    status: int
    headers: Headers
    body: bytes
    #: the request headers as the app saw them (after the plugin's request hook); None: the app never ran
    app_saw: Headers | None = None
    #: the path the app saw; None: the app never ran
    app_path: str | None = None


@dataclass
class _Echo:
    """The app behind the plugin: 200 ``ok`` (or *answer*), noting what reached it."""

    answer: Response | None = None
    saw: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.saw.append(scope)
        r = self.answer
        status, headers, body = (200, [(b"content-type", b"text/plain")], b"ok") if r is None else \
            (r.status, r.headers.raw, r.body or b"")
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class LoadedPlugin:
    """The plugins of one file, folder or entry point, loaded and started by a real :class:`PluginManager`.

    Synchronous: each method runs the manager's loop until its work is done, so use it from a sync test
    (in a running loop, run_until_complete raises RuntimeError).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, manager: Any, names: list[str], where: str) -> None:
        self._loop = loop
        #: the PluginManager that loaded it (its config: strict, as ``serve --strict``)
        self.manager = manager
        #: the names of the plugins the file or entry point held, in load order
        self.names = names
        #: what was loaded: a path, or ``entry point NAME``
        self.where = where

    @property
    def plugin(self) -> Any:
        """The first plugin's object as the server holds it (a sandbox proxy, a NativePlugin, or yours)."""
        return self.manager.get_plugin(self.names[0])

    @property
    def kind(self) -> Kind:
        """``python``, ``sandboxed`` or ``native``: how the server runs it."""
        from covet_pipe.plugin import is_sandboxed
        p = self.plugin
        if is_sandboxed(p) or self._packaged_proxy() is not None:
            return "sandboxed"
        return "native" if hasattr(p, "native_hooks") else "python"

    @property
    def helper_pids(self) -> list[int]:
        """The pids of a sandboxed plugin's live helper processes (empty for the other kinds)."""
        proxy = self._packaged_proxy() or self.plugin
        sup = getattr(proxy, "_sup", None) if self.kind == "sandboxed" else None
        return [] if sup is None else [h["pid"] for h in sup.health()["helpers"]]

    def run(self, awaitable: Any) -> Any:
        """Run *awaitable* on the plugin's loop (for async APIs of the manager or the plugin)."""
        return self._loop.run_until_complete(awaitable)

    def request(self, method: str = "GET", path: str = "/", *,
                headers: Iterable[tuple[str, str]] | dict[str, str] = (), body: bytes = b"",
                query_string: bytes = b"", app: Any = None) -> Exchange:
        """Send one HTTP request through the chain (every loaded plugin) to *app* (default: 200 ``ok``)."""
        echo = _Echo() if app is None else None
        result = self.run(call(self._pipeline(app if app is not None else echo), method, path, headers=headers,
                               body=body, query_string=query_string))
        saw = echo.saw[-1] if echo is not None and echo.saw else None
        return Exchange(result.status, result.headers, result.body,
                        Headers(saw["headers"]) if saw is not None else None,
                        saw["path"] if saw is not None else None)

    def process_request(self, request: Request) -> Any:
        """Call the first plugin's request hook with *request*; its action (None: pass on).

        A native plugin's hooks are C functions: they run through a one-plugin chain instead, and the
        result is the action's response (None when the request reached the app).
        """
        if self.kind == "native":
            ex = self._through(request, None)
            return None if ex.app_saw is not None else Response(ex.status, ex.headers.raw, ex.body)
        hook = getattr(self.plugin, "process_request", None)
        return None if hook is None else self._maybe_await(hook(request, self._ctx(request)))

    def process_response(self, response: Response, request: Request | None = None) -> Response:
        """Call the first plugin's response hook on *response* (for *request*, default ``GET /``); the response."""
        request = request if request is not None else Request()
        if self.kind == "native":
            ex = self._through(request, response)
            return Response(ex.status, ex.headers.raw, ex.body)
        hook = getattr(self.plugin, "process_response", None)
        if hook is not None:
            self._maybe_await(hook(response, self._ctx(request)))
        return response

    def close(self) -> None:
        """Shut the plugins down (a sandboxed one's helpers end) and close the loop."""
        if not self._loop.is_closed():
            try:
                self.run(self.manager.shutdown_all())
            finally:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.close()

    # -- internals -------------------------------------------------------------

    def _packaged_proxy(self) -> Any:
        """The helper's proxy of a sandboxed plugin installed as a package (covet_pipe.sandbox.packaged), or None."""
        from covet_pipe.sandbox.packaged import PackagedSandbox
        p = self.plugin
        return p._proxy if isinstance(p, PackagedSandbox) else None

    def _pipeline(self, app: Any) -> Any:
        from covet_pipe.asgi import wrap
        return wrap(app, self.manager)

    def _ctx(self, request: Request) -> Any:
        return make_request_context(request, "http", self.manager.services)

    def _maybe_await(self, value: Any) -> Any:
        return self.run(value) if inspect.isawaitable(value) else value

    def _through(self, request: Request, answer: Response | None) -> Exchange:
        echo = _Echo(answer)
        scope = request.build_scope()
        body = request.body or b""
        result = self.run(call(self._pipeline(echo), scope["method"], scope["path"],
                               headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
                               body=body, query_string=scope.get("query_string", b"")))
        saw = echo.saw[-1] if echo.saw else None
        return Exchange(result.status, result.headers, result.body,
                        Headers(saw["headers"]) if saw is not None else None, saw["path"] if saw else None)


def load_plugin(path: str | Path | None = None, *, entry_point: str | None = None, sandbox: bool = False,
                **config: Any) -> LoadedPlugin:
    """Load one plugin file, package folder or ``.so`` (or an installed entry point) as the server would, started.

    :param sandbox: run it sandboxed even without ``sandbox = true`` in its manifest.
    :param config: more :class:`PluginConfig` fields (``allowed_files``, ``memory_limit`` ...).
    :raises PluginLoadFailed: naming the file and what the loader said to fix.
    """
    from covet_pipe.config import PluginConfig
    from covet_pipe.errors import CovetPipeError
    from covet_pipe.manager import PluginManager

    if (path is None) == (entry_point is None):
        raise TypeError("covet_plugin: give a path or entry_point=NAME (one of them)")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass        # no loop runs here: the plugin gets one of its own
    else:
        raise PluginLoadFailed("covet_plugin: called inside a running event loop (an async test); use it from a "
                               "plain def test, or in async code load with PluginManager and send requests with "
                               "covet_pipe.testing.call")
    loop = asyncio.new_event_loop()
    where = f"entry point {entry_point!r}" if entry_point is not None else str(path)
    manager = PluginManager(PluginConfig(strict=True, entry_points=entry_point is not None, **config))

    async def start() -> list[str]:
        if path is not None:
            if not Path(path).exists():
                raise PluginLoadFailed(f"covet_plugin: {path} does not exist (relative paths are from "
                                       f"{Path.cwd()}); give the plugin's .py, .so or package folder")
            names = await manager.load_plugin_from_path(str(path), sandbox=sandbox)
        else:
            report = await manager.load_plugins()
            found = [n for n in report.loaded if n == entry_point]
            if not found:
                listed = ", ".join(report.loaded) or "none"
                raise PluginLoadFailed(f"covet_plugin: no installed plugin {entry_point!r} in the covet_pipe.plugins "
                                       f"entry points (installed: {listed}); pip install its package "
                                       "(pip install -e . for the one you are writing)")
            names = found
        await manager.initialize_all()
        return names

    try:
        names = loop.run_until_complete(start())
    except BaseException as exc:
        loaded = LoadedPlugin(loop, manager, [], where)
        loaded.close()
        if isinstance(exc, PluginLoadFailed):
            raise
        if isinstance(exc, CovetPipeError):
            raise PluginLoadFailed(f"covet_plugin: {where} did not load: {exc}") from exc
        raise
    return LoadedPlugin(loop, manager, names, where)
