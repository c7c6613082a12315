"""RequestId: give every request an id, and echo it on the response."""

from __future__ import annotations

import re
import uuid

from covet_pipe import MiddlewarePlugin, Request, RequestContext, Response

#: a plain id; matched with fullmatch, since "$" would also accept a trailing newline
_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestId(MiddlewarePlugin):
    """Sets ``x-request-id`` on the request the app sees and on the response.

    An incoming id is kept when ``trust_incoming`` and it is short and plain
    (``[A-Za-z0-9._:-]{1,128}``); otherwise a new UUID4 replaces it, so a client cannot
    inject header garbage. Several copies of the header are collapsed: the app sees exactly
    one, a new UUID4, since a second copy would reach it unchecked beside the checked first.
    """

    name = "request_id"
    version = "1.0.0"
    priority = 10
    failure_policy = "open"     # requests can be served without an id

    def __init__(self, header: str = "x-request-id", *, trust_incoming: bool = True) -> None:
        if not isinstance(header, str) or not re.fullmatch(r"[A-Za-z0-9-]+", header):
            raise ValueError(f"RequestId(header=...): expected a header name like 'x-request-id', got {header!r}")
        self.header = header.lower()
        self.trust_incoming = trust_incoming

    def process_request(self, request: Request, ctx: RequestContext) -> None:
        values = request.headers.getall(self.header)
        if self.trust_incoming and len(values) == 1 and _SAFE.fullmatch(values[0]):
            rid = values[0]
        else:
            # set() replaces every copy: no incoming value, checked or not, reaches the app.
            rid = uuid.uuid4().hex
            request.headers.set(self.header, rid)
        ctx.state["id"] = rid

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        response.headers.set(self.header, ctx.state["id"])
