"""``GET /metrics`` on the admin app: the same scrape as PrometheusMetrics, behind the admin token."""

from __future__ import annotations

from typing import Any

from covet_pipe.admin.routes import AdminRequest, Raw, Route
from covet_pipe.metrics.collector import CONTENT_TYPE, scrape

__all__ = ["ROUTES"]


async def _metrics(manager: Any, params: dict[str, str], request: AdminRequest) -> tuple[int, Any]:
    content_type, body = scrape(manager)
    return 200, Raw(content_type, body)


ROUTES: list[Route] = [
    Route("GET", "/metrics", _metrics, False,
          "the core's counters in Prometheus' text exposition format (every worker's sum with --workers N)",
          content_type=CONTENT_TYPE),
]
