"""The sandboxed helper: confine this process, then import one plugin and serve its hooks over IPC.

Started by the host as ``python -I -m covet_pipe.sandbox.helper_main FD`` with an empty
environment and only the channel's descriptor. The first call (``init``) carries the policy and
the plugin's path: the confinement layers go on before the plugin's module is imported.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import traceback
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from covet_pipe.sandbox.channel import ChannelClosed, HelperChannel, FramingError

if TYPE_CHECKING:   # imported at run time only after confinement (see _core())
    from covet_pipe._core import RequestContext

#: request contexts kept between a request hook and its response hook (bounded)
MAX_PENDING = 10000



def _paths(paths: Any) -> Any:
    """A plugin's paths as JSON (the host checks them: a str or a non-str item stays as it is, refused there)."""
    if paths is None or isinstance(paths, str):
        return paths
    try:
        return [p if isinstance(p, str) else repr(p) for p in paths]
    except TypeError:
        return repr(paths)

class Helper:
    """One plugin instance, its event loop for async hooks, and the per-request contexts."""

    def __init__(self, channel: HelperChannel) -> None:
        self.channel = channel
        self.plugin: Any = None
        #: the event loop for async hooks, made at the first one (a plugin with sync hooks opens none)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.contexts: OrderedDict[int, RequestContext] = OrderedDict()

    def run(self, value: Any) -> Any:
        if not inspect.isawaitable(value):
            return value
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(value)

    def close(self) -> None:
        """The helper ends: close its event loop here (left to the interpreter's exit, its finaliser can
        find its self-pipe closed first and print a traceback to the host's log)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.close()
        self.loop = None

    # -- calls -------------------------------------------------------------------------------

    def op_init(self, msg: dict[str, Any]) -> dict[str, Any]:
        from covet_pipe.sandbox import confine
        from covet_pipe.sandbox.policy import SandboxPolicy
        layers = confine.apply(SandboxPolicy.from_dict(msg["policy"]))
        # Only now, confined, does the plugin's code run.
        from pathlib import Path

        from covet_pipe.discovery import import_fresh, plugins_from
        from covet_pipe.plugin import overridden_hook, plugin_kinds
        path = Path(msg["path"])
        module = import_fresh(path)
        plugins = plugins_from(module, msg.get("config") or {}, str(path))
        if len(plugins) != 1:
            raise ValueError(f"{path} made {len(plugins)} plugins; a sandboxed file must make exactly one")
        self.plugin = p = plugins[0]
        for key, value in (msg.get("manifest") or {}).items():
            if key in ("name", "version") and getattr(p, key, None) is None:
                setattr(p, key, value)
        hooks = [h for h in ("process_request", "process_response", "initialize", "shutdown",
                             "authenticate", "authorize", "get", "set", "delete", "exists", "expire", "ttl")
                 if callable(getattr(p, h, None))]
        style = None
        if "process_request" in hooks:
            from covet_pipe.plugin import middleware_style
            style = middleware_style(p)
        overridden = [h for h in ("process_request", "process_response")
                      if h in hooks and overridden_hook(p, h) is not None]
        return {"result": {
            "layers": layers, "pid": os.getpid(),
            "name": getattr(p, "name", None), "version": str(getattr(p, "version", None)),
            "priority": getattr(p, "priority", 1000), "dependencies": list(getattr(p, "dependencies", ()) or ()),
            "protocols": sorted(getattr(p, "protocols", ("http",)) or ("http",)),
            "failure_policy": getattr(p, "failure_policy", "closed"), "kinds": list(plugin_kinds(p)),
            "style": style, "hooks": overridden,
            "async": {h: inspect.iscoroutinefunction(getattr(p, h)) for h in overridden},
            "needs_body": bool(getattr(p, "needs_body", False)),
            "paths": _paths(getattr(p, "paths", None)),
        }}

    def op_initialize(self, msg: dict[str, Any]) -> dict[str, Any]:
        from covet_pipe.sandbox.helper_context import HelperContext
        self.run(self.plugin.initialize(HelperContext(self.plugin.name, msg.get("config") or {})))
        return {}

    def op_shutdown(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.run(self.plugin.shutdown())
        return {}

    def op_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        Request, make_request_context, _ = _core()
        r = msg["req"]
        scope = {
            "type": r.get("type", "http"), "method": r["method"], "path": r["path"],
            "raw_path": r["path"].encode("utf-8"), "query_string": r.get("query", b""),
            "headers": [(k, v) for k, v in r.get("headers", ())],
            "client": tuple(r["client"]) if r.get("client") else None, "scheme": r.get("scheme", "http"),
            "http_version": "1.1", "root_path": r.get("root_path") or "",
        }
        request = Request(scope, body=r.get("body"))
        ctx = make_request_context(request, r.get("protocol", "http"), None)
        result = self.run(self.plugin.process_request(request, ctx))
        if msg.get("keep"):
            self.contexts[msg["id"]] = ctx
            while len(self.contexts) > MAX_PENDING:
                self.contexts.popitem(last=False)
        response = _response_of(result)
        if response is not None:
            return {"action": "respond", "status": response.status, "headers": response.headers.raw,
                    "body": response.body or b"", "media_type": response.media_type}
        out: dict[str, Any] = {"action": "continue"}
        edited = request.build_scope()
        if edited is not scope:      # the first edit copies the scope
            out.update(method=edited["method"], path=edited["path"], query=edited["query_string"],
                       headers=[(k, v) for k, v in edited["headers"]])
        return out

    def op_response(self, msg: dict[str, Any]) -> dict[str, Any]:
        Request, make_request_context, Response = _core()
        ctx = self._take_context(msg.get("rid")) or make_request_context(Request(), "http", None)
        resp = Response(msg["status"], [(bytes(k), bytes(v)) for k, v in msg.get("headers", [])])
        before = (resp.status, resp.headers.raw)
        self.run(self.plugin.process_response(resp, ctx))
        if (resp.status, resp.headers.raw) == before:
            return {}
        return {"status": resp.status, "headers": resp.headers.raw}

    def op_forget(self, msg: dict[str, Any]) -> dict[str, Any]:
        self._take_context(msg.get("rid"))
        return {}

    def _take_context(self, rid: int | None) -> RequestContext | None:
        """Drop and return the context kept for request *rid* (None: the request hook kept none)."""
        return None if rid is None else self.contexts.pop(rid, None)

    def op_call(self, msg: dict[str, Any]) -> dict[str, Any]:
        method = msg["method"]
        if method not in ("authenticate", "authorize", "get", "set", "delete", "exists", "expire", "ttl"):
            raise ValueError(f"no such method {method!r}")
        return {"result": self.run(getattr(self.plugin, method)(*msg.get("args", [])))}

    def op_export_state(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"result": self.run(self.plugin.export_state())}

    def op_import_state(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.run(self.plugin.import_state(msg.get("state")))
        return {}

    def op_ping(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"result": os.getpid()}

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> int:
        while True:
            try:
                msg = self.channel.receive()
            except ChannelClosed:
                return 0
            except FramingError as exc:
                print(f"covet-pipe helper: {exc}", file=sys.stderr)
                return 2
            op = msg.get("op")
            handler = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
            try:
                if handler is None:
                    raise ValueError(f"unknown call {op!r}")
                reply = {"id": msg["id"], "ok": True, **handler(msg)}
            except BaseException as exc:  # report it; the host applies the failure policy
                if isinstance(exc, KeyboardInterrupt):
                    raise
                traceback.print_exc(file=sys.stderr)
                reply = {"id": msg["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                if op == "init":
                    self.channel.send(reply)
                    return 3
            try:
                self.channel.send(reply)
            except (OSError, ValueError) as exc:
                print(f"covet-pipe helper: cannot answer: {exc}", file=sys.stderr)
                return 2
            if op == "shutdown":
                return 0


_CORE: Any = None


def _core() -> Any:
    """covet_pipe._core's Request, make_request_context and Response, imported once (after confinement)."""
    global _CORE
    if _CORE is None:
        from covet_pipe._core import Request, Response, make_request_context
        _CORE = (Request, make_request_context, Response)
    return _CORE


def _response_of(result: Any) -> Any:
    if result is None:
        return None
    from covet_pipe._core import CONTINUE, Response
    if result is CONTINUE:
        return None
    if isinstance(result, Response):
        return result
    response = getattr(result, "response", None)
    if isinstance(response, Response):
        return response
    raise TypeError(f"process_request returned {type(result).__name__}; return None, "
                    "MiddlewareAction.CONTINUE, respond(...) or reject(...)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -I -m covet_pipe.sandbox.helper_main FD (started by covet-pipe)", file=sys.stderr)
        return 2
    fd = int(args[0])
    close_inherited(keep=(0, 1, 2, fd))
    helper = Helper(HelperChannel(fd))
    try:
        return helper.serve()
    finally:
        helper.close()


def close_inherited(keep: tuple[int, ...]) -> None:
    """Close every descriptor but *keep*: whatever the host's event loop let through (uvloop's spawn leaves
    copies of /dev/null and of the stderr socket) is not the plugin's to use."""
    for name in os.listdir("/proc/self/fd"):
        n = int(name)
        if n not in keep:
            try:
                os.close(n)
            except OSError:     # the descriptor of the listing itself, closed already
                pass


if __name__ == "__main__":
    sys.exit(main())
