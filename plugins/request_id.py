"""RequestId: give every request an id, and echo it on the response."""

from __future__ import annotations

import re
import uuid

from covet_pipe import MiddlewarePlugin, Request, RequestContext, Response

_SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestId(MiddlewarePlugin):
    """Sets ``x-request-id`` on the request the app sees and on the response.

    An incoming id is kept when ``trust_incoming`` and it is short and plain;
    otherwise a new UUID4 replaces it (a client cannot inject header garbage).
    """

    name = "request_id"
    version = "1.0.0"
    priority = 10
    failure_policy = "open"     # requests can be served without an id

    def __init__(self, header: str = "x-request-id", *, trust_incoming: bool = True) -> None:
        if not header or not re.match(r"^[A-Za-z0-9-]+$", header):
            raise ValueError(f"RequestId(header=...): expected a header name like 'x-request-id', got {header!r}")
        self.header = header.lower()
        self.trust_incoming = trust_incoming

    def process_request(self, request: Request, ctx: RequestContext) -> None:
        incoming = request.headers.get(self.header) if self.trust_incoming else None
        if incoming is not None and _SAFE.match(incoming):
            rid = incoming
        else:
            rid = uuid.uuid4().hex
            request.headers.set(self.header, rid)
        ctx.state["id"] = rid

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        response.headers.set(self.header, ctx.state["id"])
