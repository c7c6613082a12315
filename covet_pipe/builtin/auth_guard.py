"""AuthGuard: reject requests an auth provider does not authenticate (401) or authorise (403)."""

from __future__ import annotations

from typing import Any, Iterable

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginContext, Request, RequestContext
from covet_pipe.routing import route_path

__all__ = ["AuthGuard"]


#: characters a prefix cannot usefully hold: prefixes are decoded paths matched segment by segment
_NOT_IN_PREFIX = ("*", "?", "#", "%")


def _prefixes(value: Iterable[str] | None, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise ValueError(f"AuthGuard({field}=...): expected a list of path prefixes such as ['/private'], "
                         f"got the string {value!r}; write {field}=[{value!r}]")
    out = []
    for prefix in value:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            hint = f"'/{prefix}'" if isinstance(prefix, str) and prefix else "'/private'"
            raise ValueError(f"AuthGuard({field}=...): a path prefix starts with '/', such as '/private'; "
                             f"got {prefix!r}; write {hint}")
        bad = next((c for c in _NOT_IN_PREFIX if c in prefix), None)
        if bad is not None or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
            # "/admin/*" would match only a literal "*"; "%2F" never occurs in a decoded path.
            cut = prefix.split("*", 1)[0].rstrip("/") or "/"
            raise ValueError(f"AuthGuard({field}=...): {prefix!r} is matched literally against the decoded "
                             f"route path, so it would never match; a prefix covers its whole subtree, "
                             f"write {cut!r} (no wildcards, query, fragment, percent-escapes or controls)")
        # "/private/" and "/private" mean the same subtree.
        out.append(prefix.rstrip("/") or "/")
    return tuple(out)


def _under(path: str, prefix: str) -> bool:
    # Whole segments only: "/private" covers "/private" and "/private/x", not "/privateer".
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class AuthGuard(MiddlewarePlugin):
    """Takes a Bearer token, authenticates it with an auth provider, then authorises the request.

    Paths are route paths (:func:`covet_pipe.route_path`: the path less ``root_path``), the path
    the app's router matches, so a root path or a ``Mount`` cannot move a request out of reach.
    No or an invalid token gets 401 with ``WWW-Authenticate: Bearer``; more than one
    ``Authorization`` header gets 400 (the app would see the copies this guard did not check);
    a user the provider does not authorise for ``(resource=route path, action=method)`` gets 403.
    The authenticated user is in ``ctx.state["user"]`` for this plugin's response hook and subclasses.

    :param provider: the name of the AuthPlugin to ask, such as ``"jwt_auth"``.
    :param protect: route-path prefixes to guard (``["/admin"]``); all paths when omitted.
    :param exempt: route-path prefixes never guarded, even under a protected one (``["/private/health"]``).
    :param name: the plugin name; give guards for different providers different names.
    :raises ValueError: for a prefix that does not start with ``/`` or holds ``*``, ``?``, ``#`` or
        ``%``, for ``protect=[]``, and for an exempt prefix that covers a whole protected one.
    """

    name = "auth_guard"
    version = "1.0.0"
    # After CORS (50), so preflights are answered without credentials; before ordinary plugins.
    priority = 200
    # A websocket handshake to a protected path needs the token as much as a request does, and
    # a RESP command (path = its key) carries AUTH's password as its Bearer token.
    protocols = frozenset({"http", "websocket", "resp"})

    def __init__(self, provider: str = "jwt_auth", *, protect: Iterable[str] | None = None,
                 exempt: Iterable[str] | None = None, name: str | None = None) -> None:
        if not isinstance(provider, str) or not provider:
            raise ValueError(f"AuthGuard(provider=...): expected the name of an auth plugin such as "
                             f"'jwt_auth', got {provider!r}")
        self.provider_name = provider
        self.protect = _prefixes(protect, "protect") if protect is not None else ("/",)
        self.exempt = _prefixes(exempt, "exempt")
        if not self.protect:
            raise ValueError("AuthGuard(protect=[]): an empty list guards no path at all; omit protect to "
                             "guard every path, or list the prefixes to guard, such as protect=['/admin']")
        for p in self.protect:
            cover = next((e for e in self.exempt if _under(p, e)), None)
            if cover is not None:
                raise ValueError(f"AuthGuard(exempt=...): {cover!r} exempts all of the protected prefix {p!r}, "
                                 f"so nothing under it is guarded; exempt a narrower prefix, such as "
                                 f"{(p.rstrip('/') + '/health')!r}")
        if name is not None:
            self.name = name
        # The provider must start first; its name is only known here, so the dependency is too.
        self.dependencies = [provider]
        self.provider: Any = None

    async def initialize(self, ctx: PluginContext) -> None:
        self.provider = ctx.get_service(self.provider_name)
        for method in ("authenticate", "authorize"):
            if not callable(getattr(self.provider, method, None)):
                raise TypeError(f"AuthGuard: service {self.provider_name!r} has no {method}() method; "
                                "name an AuthPlugin, such as provider='jwt_auth'")

    def guards(self, path: str) -> bool:
        """Whether requests to the route path *path* need credentials."""
        if any(_under(path, p) for p in self.exempt):
            return False
        return any(_under(path, p) for p in self.protect)

    async def process_request(self, request: Request, ctx: RequestContext) -> Any:
        path = route_path(request.scope)
        if not self.guards(path):
            return None
        values = request.headers.getall("authorization")
        if len(values) > 1:
            # Refused, not collapsed: which copy the client meant is unknowable, and the app (or a
            # framework's own auth) might read another one than the copy checked here.
            return MiddlewareAction.reject(400, "More than one Authorization header; send exactly one")
        token = _bearer(values[0] if values else None)
        if token is None:
            return MiddlewareAction.reject(401, "Authentication required",
                                           {"www-authenticate": "Bearer"})
        user = await self.provider.authenticate({"token": token, "scheme": "Bearer"})
        if user is None:
            return MiddlewareAction.reject(401, "Invalid or expired token",
                                           {"www-authenticate": 'Bearer error="invalid_token"'})
        if not await self.provider.authorize(user, resource=path or "/", action=request.method):
            return MiddlewareAction.reject(403, "Forbidden")
        ctx.state["user"] = user
        request.state["user"] = user     # for the app and later plugins (scope["state"])
        return None


def _bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), or None."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
