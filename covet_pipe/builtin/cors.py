"""CORS: answer preflight requests and add Access-Control-* headers, as Starlette's CORSMiddleware does."""

from __future__ import annotations

import re
from typing import Iterable

from covet_pipe import Headers, MiddlewareAction, MiddlewarePlugin, Request, RequestContext, Response

__all__ = ["CORS", "CORSMiddleware"]

#: what ``allow_methods=["*"]`` stands for (Starlette's list)
ALL_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY")
#: request headers a browser may always send without asking (Fetch's CORS-safelisted headers)
SAFELISTED_HEADERS = ("Accept", "Accept-Language", "Content-Language", "Content-Type")

_ORIGIN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s]+$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PREFLIGHT_VARY = ("Origin, Access-Control-Request-Method, Access-Control-Request-Headers, "
                   "Access-Control-Request-Private-Network")


def _strings(value: object, field: str, example: str) -> list[str]:
    # A bare string is the usual slip (allow_origins="*"); iterating it would allow "*" by accident
    # or split "https://a.com" into letters, so refuse it with the list the caller meant.
    if isinstance(value, (str, bytes)):
        raise ValueError(f"CORS({field}=...): expected a list of strings such as {example}, "
                         f"got the string {value!r}; write {field}=[{value!r}]")
    try:
        # call-overload: value is whatever the caller passed; list() raises TypeError if not iterable
        items: list[str] = list(value)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"CORS({field}=...): expected a list of strings such as {example}, "
                         f"got {value!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"CORS({field}=...): expected strings such as {example}, "
                             f"got {item!r} ({type(item).__name__})")
    return items


class CORS(MiddlewarePlugin):
    """Cross-origin resource sharing for browsers.

    A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
    here: 200 with the allow headers, or 400 naming what was refused. Other requests go on, and
    the response gets ``Access-Control-Allow-Origin`` when the origin is allowed. ``Vary: Origin``
    is added whenever the answer depends on the origin (specific origins, or credentials).

    :param allow_origins: origins such as ``["https://example.com"]``; ``["*"]`` allows any.
    :param allow_methods: methods a preflight may ask for; ``["*"]`` allows the common ones.
    :param allow_headers: request headers a preflight may ask for (the safelisted ones always pass);
        ``["*"]`` allows any.
    :param allow_credentials: let browsers send cookies; list the origins, since ``["*"]`` with
        credentials lets every site read answers made with the user's cookies, and is refused
        unless ``allow_any_origin_with_credentials``. With credentials, the ``null`` origin
        (sandboxed iframes, ``file:`` and ``data:`` pages: anyone can send it) is never allowed.
    :param allow_origin_regex: origins allowed by a full match of this pattern.
    :param expose_headers: response headers scripts may read.
    :param max_age: seconds a browser may cache a preflight answer.
    :param allow_private_network: answer Private Network Access preflights with permission.
    :param allow_any_origin_with_credentials: accept ``allow_origins=["*"]`` with credentials, echoing
        any origin but ``null``; only for an API whose every response is meant for every site.

    A request with more than one ``Origin`` header gets 400: the answer would follow the first
    while the app could check another.
    """

    name = "cors"
    version = "1.0.0"
    # Before auth guards (200): a preflight carries no credentials and must not get 401, and
    # errors from later plugins still get CORS headers, so the browser shows them to the script.
    priority = 50

    def __init__(self, allow_origins: Iterable[str] = (), allow_methods: Iterable[str] = ("GET",),
                 allow_headers: Iterable[str] = (), allow_credentials: bool = False,
                 allow_origin_regex: str | None = None, expose_headers: Iterable[str] = (),
                 max_age: int = 600, allow_private_network: bool = False, *,
                 allow_any_origin_with_credentials: bool = False) -> None:
        origins = _strings(allow_origins, "allow_origins", "['https://example.com'] or ['*']")
        if "*" in origins and allow_credentials and not allow_any_origin_with_credentials:
            raise ValueError(
                "CORS(allow_origins=['*'], allow_credentials=True): every site, and the 'null' origin, could "
                "read responses made with the user's cookies; list the origins instead, such as "
                "CORS(allow_origins=['https://app.example.com'], allow_credentials=True), or pass "
                "allow_any_origin_with_credentials=True if every response is meant for every site")
        for origin in origins:
            if origin != "*" and not _ORIGIN.match(origin):
                hint = origin.rstrip("/") if _ORIGIN.match(origin.rstrip("/")) else "https://example.com"
                raise ValueError(f"CORS(allow_origins=...): {origin!r} is not an origin; an origin is "
                                 f"scheme://host[:port] with no path or trailing slash, such as {hint!r}")
        methods = _strings(allow_methods, "allow_methods", "['GET', 'POST'] or ['*']")
        for method in methods:
            if method != "*" and not _TOKEN.match(method):
                raise ValueError(f"CORS(allow_methods=...): {method!r} is not an HTTP method; use names "
                                 "such as 'GET' or 'POST', or '*'")
        headers = _strings(allow_headers, "allow_headers", "['Authorization', 'X-Requested-With'] or ['*']")
        exposed = _strings(expose_headers, "expose_headers", "['X-Request-Id']")
        for header in headers + exposed:
            if header != "*" and not _TOKEN.match(header):
                raise ValueError(f"CORS: {header!r} is not a header name; use names such as 'X-Request-Id'")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
            raise ValueError(f"CORS(max_age=...): expected a number of seconds >= 0 such as 600, got {max_age!r}")
        regex = None
        if allow_origin_regex is not None:
            try:
                regex = re.compile(allow_origin_regex)
            except (re.error, TypeError) as exc:
                raise ValueError(f"CORS(allow_origin_regex=...): {allow_origin_regex!r} is not a regular "
                                 f"expression ({exc}); use a pattern such as r'https://.*\\.example\\.com'") from None

        self.allow_all_origins = "*" in origins
        self.allow_origins = frozenset(origins)
        self.allow_origin_regex = regex
        # Methods are case-sensitive tokens; the standard ones are upper-case, as browsers send them.
        self.allow_methods = ALL_METHODS if "*" in methods else tuple(m.upper() for m in methods)
        self.allow_all_headers = "*" in headers
        # Listed as given (Starlette's spelling); compared case-insensitively.
        listed = sorted(set(SAFELISTED_HEADERS) | {h for h in headers if h != "*"})
        self.allow_headers = frozenset(h.lower() for h in listed)
        self.allow_credentials = bool(allow_credentials)
        self.allow_private_network = bool(allow_private_network)
        self.expose_headers = tuple(exposed)
        self.max_age = max_age
        # Whether the answer depends on the request's Origin: then caches must key on it.
        self.vary_origin = not self.allow_all_origins or self.allow_credentials

        # Headers of an allowed simple request, worked out once.
        simple: list[tuple[str, str]] = []
        if self.allow_credentials:
            simple.append(("access-control-allow-credentials", "true"))
        if exposed:
            simple.append(("access-control-expose-headers", ", ".join(exposed)))
        self._simple = tuple(simple)

        pre: list[tuple[str, str]] = [("vary", _PREFLIGHT_VARY)]
        if not self.vary_origin:
            pre.append(("access-control-allow-origin", "*"))
        pre.append(("access-control-allow-methods", ", ".join(self.allow_methods)))
        pre.append(("access-control-max-age", str(max_age)))
        if not self.allow_all_headers:
            pre.append(("access-control-allow-headers", ", ".join(listed)))
        if self.allow_credentials:
            pre.append(("access-control-allow-credentials", "true"))
        self._preflight = tuple(pre)

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether *origin* may read responses."""
        if origin == "null" and self.allow_credentials:
            return False
        if self.allow_all_origins or origin in self.allow_origins:
            return True
        return self.allow_origin_regex is not None and self.allow_origin_regex.fullmatch(origin) is not None

    def process_request(self, request: Request, ctx: RequestContext) -> object:
        headers = request.headers
        origin = headers.get("origin")
        if origin is None:
            return None
        if len(headers.getall("origin")) > 1:
            # Refused: browsers send one; the answer would follow the first, the app might check another.
            return MiddlewareAction.reject(400, "More than one Origin header; send exactly one")
        if request.method == "OPTIONS" and "access-control-request-method" in headers:
            # The preflight's answer already carries every CORS header; the response hook,
            # which runs for it too, must leave it alone.
            ctx.state["preflight"] = True
            return MiddlewareAction.respond(self.preflight_response(request))
        ctx.state["origin"] = origin
        return None

    def preflight_response(self, request: Request) -> Response:
        """The answer to a preflight: 200 with the allow headers, or 400 naming what was refused."""
        headers = request.headers
        origin = headers.get("origin") or ""
        out = dict(self._preflight)
        failures = []
        if self.is_allowed_origin(origin):
            if self.vary_origin:
                out["access-control-allow-origin"] = origin
        else:
            failures.append("origin")
        if headers.get("access-control-request-method") not in self.allow_methods:
            failures.append("method")
        requested = headers.get("access-control-request-headers")
        if requested is not None:
            if self.allow_all_headers:
                out["access-control-allow-headers"] = requested
            elif any(h.strip().lower() not in self.allow_headers for h in requested.split(",") if h.strip()):
                failures.append("headers")
        if headers.get("access-control-request-private-network") is not None:
            if self.allow_private_network:
                out["access-control-allow-private-network"] = "true"
            else:
                failures.append("private-network")
        if failures:
            return Response(400, out, "Disallowed CORS " + ", ".join(failures))
        return Response(200, out, "OK")

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        state = ctx.state
        if "preflight" in state:
            return
        headers = response.headers
        origin = state.get("origin")
        if origin is not None and self.is_allowed_origin(origin):
            headers.set("access-control-allow-origin", "*" if not self.vary_origin else origin)
            for name, value in self._simple:
                headers.set(name, value)
        if self.vary_origin:
            _add_vary(headers, "Origin")


def _add_vary(headers: Headers, field: str) -> None:
    # Keep what the app said varies and add ours once: a lost Vary serves one origin's answer to another.
    current = [v.strip() for value in headers.getall("vary") for v in value.split(",") if v.strip()]
    if "*" in current or field.lower() in (v.lower() for v in current):
        return
    headers.set("vary", ", ".join(current + [field]))


#: CORS under a second name, for code that spells it ``CORSMiddleware(allow_origins=["*"])``
CORSMiddleware = CORS
