"""The host's stand-in for a sandboxed plugin: a hook-style plugin whose hooks are IPC calls."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from covet_pipe._core import Headers, MiddlewareAction, Request, RequestContext, Response
from covet_pipe.errors import PluginError, PluginLoadError
from covet_pipe.plugin import AuthPlugin, MiddlewarePlugin, Plugin, StoragePlugin
from covet_pipe.sandbox.channel import Reply
from covet_pipe.sandbox.supervisor import SandboxSpec, SandboxUnavailable, Supervisor

__all__ = ["start_sandboxed", "SandboxedPlugin", "SandboxedPluginError"]

_RID = "covet.sandbox.rid"
#: ctx.state[_RID] when the request hook could not reach a helper: the response hook does not either
_SKIP = ("skip", None)
#: what a header from a helper may contain (RFC 9110 token names; values without CR, LF, NUL, controls)
_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class SandboxedPluginError(Exception):
    """The plugin raised inside its helper (the message is the helper's one-line report)."""

    #: what a fail-closed failure answers (500; 503 when the sandbox is unavailable)
    http_status = 500


class SandboxUnavailableError(SandboxedPluginError):
    """The plugin's helper could not take the call."""

    http_status = 503


class SandboxedPlugin(Plugin):
    """Common part of every sandbox proxy: lifecycle and health through the supervisor."""

    _covet_sandboxed = True
    _sup: Supervisor
    #: set by start_sandboxed from the helper's report (a middleware proxy also reads them)
    needs_body: bool
    paths: Any
    _has_response: bool

    async def initialize(self, ctx: Any) -> None:
        if self._sup.closing or self._sup.moved():
            # shut down before (a later lifespan startup), or loaded on a loop that is not this one
            await self._sup.restart()
        try:
            await self._sup.initialize(ctx.config)
        except Exception:
            # A plugin that failed to start is marked failed and never called: end its helpers.
            await self._sup.shutdown(call_plugin=False)
            raise
        except BaseException:
            self._sup.abort("initialize() was cancelled")
            raise

    async def shutdown(self) -> None:
        await self._sup.shutdown()

    def metadata(self) -> dict[str, Any]:
        return {"description": f"sandboxed plugin from {self._sup.spec.path}", **self._sup.health()}

    async def export_state(self) -> Any:
        # state comes back as msgpack plain data, decoded by the fixed Reply type
        _, reply = await self._checked("export_state")
        return reply.result

    async def import_state(self, state: Any) -> None:
        # every helper of the pool gets the state (each has its own copy of the plugin)
        for helper in [h for h in self._sup.helpers if h is not None and h.alive]:
            await self._checked("import_state", helper, state=state)

    def _unavailable(self, why: str) -> Any:
        # Fail closed: 503 for an unavailable sandbox; fail open: go on without it.
        self._sup.logger.error("sandboxed plugin %r unavailable: %s", self.name, why)
        if self.failure_policy == "open":
            return None
        return MiddlewareAction.reject(503, "Service Unavailable")

    async def _checked(self, op: str, helper: Any = None, **fields: Any) -> tuple[Any, Reply]:
        h, reply = await self._sup.call(op, helper, **fields)
        if not reply.ok:
            raise SandboxedPluginError(reply.error or "the plugin failed in its sandbox")
        return h, reply


async def _process_request(self: SandboxedPlugin, request: Request, ctx: RequestContext) -> Any:
    payload: dict[str, Any] = {
        "type": request.type, "method": request.method, "path": request.path,
        "root_path": request.scope.get("root_path") or "", "query": request.query_string, "headers": request.headers.raw,
        "client": list(request.client) if request.client else None, "scheme": request.scheme,
        "protocol": ctx.protocol,
    }
    if self.needs_body:
        payload["body"] = request.body
    try:
        h, reply = await self._checked("request", req=payload, keep=self._has_response)
    except SandboxUnavailable as exc:
        if self._has_response:
            ctx.state[_RID] = _SKIP
        return self._unavailable(str(exc))
    if self._has_response:
        ctx.state[_RID] = (h, reply.id)
    problem = _invalid(reply)
    if problem is not None:
        if self._has_response:
            ctx.state[_RID] = _SKIP
        await self._sup.kill_helper(h, problem)
        return self._unavailable(f"the helper {problem}")
    if reply.action == "respond":
        assert reply.status is not None     # _invalid refused a "respond" without a status
        return MiddlewareAction.respond(Response(reply.status, reply.headers or [], reply.body or b"",
                                                 reply.media_type))
    if reply.headers is not None:
        if reply.method:
            request.method = reply.method
        if reply.path and reply.path != request.path:
            request.path = reply.path
        if reply.query is not None and reply.query != request.query_string:
            request.query_string = reply.query
        _replace_headers(request.headers, reply.headers)
    return None


async def _process_response(self: SandboxedPlugin, response: Response, ctx: RequestContext) -> None:
    where = ctx.state.pop(_RID, None) if _RID in ctx.state else None
    if where is _SKIP:
        return      # the request hook already answered by the failure policy
    helper, rid = where if where is not None else (None, None)
    if helper is not None and not helper.alive:
        # Another helper takes it, without the request's state (its call ids are not this one's).
        helper = rid = None
    try:
        h, reply = await self._checked("response", helper, rid=rid, status=response.status,
                                       headers=response.headers.raw)
    except SandboxUnavailable as exc:
        if self._unavailable(str(exc)) is not None:
            raise SandboxUnavailableError(f"unavailable: {exc}") from None
        return
    problem = _invalid(reply, response=True)
    if problem is not None:
        await self._sup.kill_helper(h, problem)
        if self._unavailable(f"the helper {problem}") is not None:
            raise SandboxUnavailableError(f"unavailable: the helper {problem}") from None
        return
    if reply.status is not None:
        response.status = reply.status
    if reply.headers is not None:
        _replace_headers(response.headers, reply.headers)


def _invalid(reply: Reply, response: bool = False) -> str | None:
    """What is wrong with a hook's reply from a helper (None: nothing); the helper is then killed."""
    if response:
        if reply.status is not None and not 100 <= reply.status <= 999:
            return f"sent an invalid status {reply.status!r}"
    elif reply.action == "respond":
        if reply.status is None or not 100 <= reply.status <= 999:
            return f"sent an invalid status {reply.status!r}"
        if reply.media_type is not None and _CONTROL.search(reply.media_type):
            return "sent an invalid media type"
    elif reply.action != "continue":
        return f"sent an unknown action {reply.action!r}"
    elif reply.headers is not None:
        if reply.method is not None and not _TOKEN.fullmatch(reply.method):
            return f"sent an invalid method {reply.method[:40]!r}"
        if reply.path is not None and (not reply.path.startswith(("/", "*")) or _CONTROL.search(reply.path)):
            return f"sent an invalid path {reply.path[:80]!r}"
    if reply.headers is not None:
        for k, v in reply.headers:
            if not k or _BAD_NAME.search(k) or _BAD_VALUE.search(v):
                return f"sent an invalid header {k[:40]!r}: {v[:80]!r}"
    return None


def _replace_headers(headers: Headers, new: list[tuple[bytes, bytes]]) -> None:
    for name in {k for k, _ in headers.raw}:
        headers.remove(name)
    for k, v in new:
        headers.add(k, v)


def _remote(method: str) -> Any:
    async def call(self: SandboxedPlugin, *args: Any) -> Any:
        try:
            _, reply = await self._checked("call", method=method, args=list(args))
        except SandboxUnavailable as exc:
            raise PluginError(f"sandboxed plugin {self.name!r} is unavailable: {exc}",
                              plugin_name=self.name) from None
        return reply.result
    call.__name__ = method
    return call


async def start_sandboxed(spec: SandboxSpec) -> SandboxedPlugin:
    """Start the helpers of a sandboxed plugin and return the proxy the registry holds.

    :raises PluginLoadError: the helper could not start, a required layer is missing, or the
        plugin is of a kind that cannot be sandboxed.
    """
    # named from the start (its first log lines come before the plugin reports its name)
    sup = Supervisor(spec, str(spec.manifest.get("name") or Path(spec.path).stem))
    meta = await sup.start()
    kinds = set(meta.get("kinds") or ())
    name = meta.get("name")
    try:
        if "protocol" in kinds:
            raise PluginLoadError(f"{spec.path}: protocol plugins cannot run sandboxed (they own "
                                  "connections); load it in-process if you trust it", path=spec.path)
        if meta.get("style") == "call_next":
            raise PluginLoadError(f"{spec.path}: plugin {name!r} uses the call_next style, which cannot run "
                                  "sandboxed; use the hook style (process_request(request, ctx))",
                                  path=spec.path)
        bases: list[type] = [SandboxedPlugin]
        attrs: dict[str, Any] = {}
        if "middleware" in kinds:
            bases.append(MiddlewarePlugin)
            attrs["style"] = "hook"
            if "process_request" in meta.get("hooks", ()):
                attrs["process_request"] = _process_request
            if "process_response" in meta.get("hooks", ()):
                attrs["process_response"] = _process_response
        if "auth" in kinds:
            bases.append(AuthPlugin)
            attrs.update(authenticate=_remote("authenticate"), authorize=_remote("authorize"))
        if "storage" in kinds:
            bases.append(StoragePlugin)
            attrs.update({m: _remote(m) for m in ("get", "set", "delete", "exists", "expire", "ttl")})
        cls = type(f"Sandboxed[{name}]", tuple(bases), attrs)
        proxy: SandboxedPlugin = cls()     # bases[0] is SandboxedPlugin
    except BaseException:
        await sup.shutdown()
        raise
    proxy._sup = sup
    proxy.name = name
    proxy.version = meta.get("version")
    proxy.priority = meta.get("priority", 1000)
    proxy.dependencies = meta.get("dependencies", [])
    proxy.protocols = frozenset(meta.get("protocols") or ("http",))
    proxy.failure_policy = meta.get("failure_policy", "closed")
    proxy.needs_body = bool(meta.get("needs_body"))
    paths = meta.get("paths")
    proxy.paths = tuple(paths) if isinstance(paths, list) else paths     # checked by the registry
    proxy._has_response = "process_response" in meta.get("hooks", ())
    return proxy
