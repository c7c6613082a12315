"""AuthGuard: reject requests an auth provider does not authenticate (401) or authorise (403)."""

from __future__ import annotations

from typing import Any, Iterable

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginContext, Request, RequestContext

__all__ = ["AuthGuard"]


def _prefixes(value: Iterable[str] | None, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise ValueError(f"AuthGuard({field}=...): expected a list of path prefixes such as ['/private'], "
                         f"got the string {value!r}; write {field}=[{value!r}]")
    out = []
    for prefix in value:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"AuthGuard({field}=...): a path prefix starts with '/', such as '/private'; "
                             f"got {prefix!r}")
        # "/private/" and "/private" mean the same subtree.
        out.append(prefix.rstrip("/") or "/")
    return tuple(out)


def _under(path: str, prefix: str) -> bool:
    # Whole segments only: "/private" covers "/private" and "/private/x", not "/privateer".
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class AuthGuard(MiddlewarePlugin):
    """Takes a Bearer token, authenticates it with an auth provider, then authorises the request.

    No or an invalid token gets 401 with ``WWW-Authenticate: Bearer``; a user the provider does
    not authorise for ``(resource=path, action=method)`` gets 403. The authenticated user is in
    ``ctx.state["user"]`` for this plugin's response hook and subclasses.

    :param provider: the name of the AuthPlugin to ask, such as ``"jwt_auth"``.
    :param protect: path prefixes to guard; all paths when omitted.
    :param exempt: path prefixes never guarded, even under a protected one (``["/private/health"]``).
    :param name: the plugin name; give guards for different providers different names.
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
        """Whether requests to *path* need credentials."""
        if any(_under(path, p) for p in self.exempt):
            return False
        return any(_under(path, p) for p in self.protect)

    async def process_request(self, request: Request, ctx: RequestContext) -> Any:
        if not self.guards(request.path):
            return None
        token = _bearer(request.headers.get("authorization"))
        if token is None:
            return MiddlewareAction.reject(401, "Authentication required",
                                           {"www-authenticate": "Bearer"})
        user = await self.provider.authenticate({"token": token, "scheme": "Bearer"})
        if user is None:
            return MiddlewareAction.reject(401, "Invalid or expired token",
                                           {"www-authenticate": 'Bearer error="invalid_token"'})
        if not await self.provider.authorize(user, resource=request.path, action=request.method):
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
