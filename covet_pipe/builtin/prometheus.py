"""PrometheusMetrics: ``GET /metrics`` on the served app, the core's counters in Prometheus' text format.

The scrape is read from the counters the compiled core keeps anyway (:mod:`covet_pipe.metrics`); while
requests are served this plugin adds one path comparison per request and nothing else. Give it a
token (``token=`` or ``token_file=``) and a scrape needs ``Authorization: Bearer <token>`` (401/403
with no detail, failed attempts rate-limited per address); without one the path is open to whoever
reaches the port: bind it to a private address, or scrape the admin port instead (its ``/metrics``
needs the admin token).
"""

from __future__ import annotations

from typing import Any

from covet_pipe import MiddlewarePlugin, PluginContext, Request, RequestContext, Response
from covet_pipe.admin.auth import Authenticator, read_token
from covet_pipe.metrics import multiprocess
from covet_pipe.metrics.collector import scrape
from covet_pipe.routing import route_path

__all__ = ["PrometheusMetrics", "PrometheusMetricsPlugin"]

#: the service name under which the manager may be offered (``manager.provide_service(MANAGER_SERVICE, m)``)
MANAGER_SERVICE = "covet_pipe.manager"

_REFUSED = {401: b"unauthorized\n", 403: b"forbidden\n", 429: b"too many failed attempts\n"}


class PrometheusMetrics(MiddlewarePlugin):
    """Answers ``GET`` (and ``HEAD``) on *path* with the scrape; every other request passes untouched.

    :param manager: the PluginManager whose plugins are reported; when omitted, the service
        ``"covet_pipe.manager"`` (``manager.provide_service("covet_pipe.manager", manager)``).
    :param path: the scrape's path on the served app.
    :param token: a bearer token a scrape must carry (or *token_file*: its first line).
    """

    name = "prometheus_metrics"
    version = "1.0.0"
    priority = 5                # before the other plugins: a scrape is answered, not guarded by them

    def __init__(self, manager: Any = None, *, path: str = "/metrics", token: str | None = None,
                 token_file: str | None = None) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"PrometheusMetrics(path=...): expected a path such as '/metrics', got {path!r}")
        self.manager = manager
        self.path = path
        #: the core calls this plugin for the scrape's path alone (the rest of the traffic never meets it)
        self.paths = (path,)
        secret = read_token(token, token_file, who="PrometheusMetrics", what="scrape token")
        self._auth = Authenticator(secret) if secret is not None else None

    async def initialize(self, ctx: PluginContext) -> None:
        if self.manager is None:
            try:
                self.manager = ctx.get_service(MANAGER_SERVICE)
            except LookupError:
                raise ValueError("PrometheusMetrics needs the manager it reports: PrometheusMetrics(manager), or "
                                 f"manager.provide_service({MANAGER_SERVICE!r}, manager) before it starts") from None
        multiprocess.flusher(self.manager)     # with --workers N: this worker's counters reach the files

    async def shutdown(self) -> None:
        if self.manager is not None:
            await multiprocess.stop(self.manager)

    def process_request(self, request: Request, ctx: RequestContext) -> Response | None:
        if route_path(request.scope) != self.path:       # (the core checked already; a direct call may not)
            return None
        if request.method not in ("GET", "HEAD"):
            return Response(405, [("allow", "GET, HEAD")], b"")
        if self._auth is not None:
            client = request.client[0] if request.client else "unknown"
            given = request.headers.get("authorization") or ""
            refused = self._auth.check({b"authorization": given.encode("latin-1", "replace")}, client)
            if refused:
                headers = [("content-type", "text/plain; charset=utf-8")]
                if refused == 401:
                    headers.append(("www-authenticate", "Bearer"))
                elif refused == 429:
                    headers.append(("retry-after", str(self._auth.retry_after(client))))
                return Response(refused, headers, _REFUSED[refused])
        content_type, body = scrape(self.manager)
        return Response(200, [("content-type", content_type), ("cache-control", "no-store")],
                        b"" if request.method == "HEAD" else body)


#: the name the ADR gives it
PrometheusMetricsPlugin = PrometheusMetrics
