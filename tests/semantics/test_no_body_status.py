"""Issue 15, defect 1: a plugin that turns a 200 into a 204 or 304 must not forward the app's body.

RFC 9110 §15.3.5 / §15.4.5: a 204 or 304 ends at its head. Forwarding the app's ``content-length: 5`` and
``hello`` puts five stray bytes where the next response should start, so every check here reads the raw
bytes of a keep-alive connection served by a real uvicorn: after the first head must come the second
response, byte for byte.
"""

from __future__ import annotations

import pytest

from covet_pipe import MiddlewarePlugin, wrap
from tests._layers import ACTOR_PRIORITY, layered, manager_with, styles
from tests._wire import parse_head, request, two_requests

HELLO = b"hello"


def _wanted(path: str) -> int | None:
    """``/status/204/...`` asks the plugin for a 204; other paths are left alone."""
    parts = path.split("/")
    return int(parts[2]) if len(parts) > 2 and parts[1] == "status" else None


class StatusHook(MiddlewarePlugin):
    name = "status_setter"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    def process_response(self, response, ctx):
        status = _wanted(ctx.request.path)
        if status is not None:
            response.status = status


class StatusCallNext(MiddlewarePlugin):
    name = "status_setter"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    async def process_request(self, request, call_next):
        response = await call_next(request)
        status = _wanted(request.path)
        if status is not None:
            response.status = status
        return response


async def hello_app(scope, receive, send):
    """200 ``hello``: with a content-length, or (a path ending in ``/chunked``) in two chunks without one."""
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/chunked"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": HELLO[:3], "more_body": True})
        await send({"type": "http.response.body", "body": HELLO[3:]})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"x-app", b"1"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": HELLO})


def _pipeline(style: str):
    return wrap(hello_app, manager_with(*layered(style, StatusHook, StatusCallNext)))


def _assert_next_response_follows(rest: bytes, closed: bool, *, head_only: bool = False) -> None:
    """*rest* (what followed the first head) is the second response exactly: a 200 ``hello``."""
    assert rest.startswith(b"HTTP/1.1 200 "), f"bytes between the two responses: {rest[:40]!r}"
    second, body = parse_head(rest)
    assert second.status == 200
    assert body == (b"" if head_only else HELLO)
    assert closed, "the second request asked to close; the server did not (still reading a body?)"




@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize("style", styles())
def test_status_without_body_set_on_a_200_sends_no_body_and_keeps_the_connection(serve, style, status):
    with serve(_pipeline(style)) as s:
        for kind in ("length", "chunked"):
            data, closed = two_requests(s.port, request("GET", f"/status/{status}/{kind}"),
                                        request("GET", "/plain", close=True))
            head, rest = parse_head(data)
            assert head.status == status, kind
            assert "transfer-encoding" not in head.names(), kind
            if status == 204:
                assert "content-length" not in head.names(), kind     # RFC 9110 §8.6: MUST NOT
            else:
                # a 304 may carry the length the 200 would have had (RFC 9110 §8.6), nothing else
                assert head.get("content-length") in (None, str(len(HELLO))), kind
            assert head.get("x-app") == "1", kind                     # the app's other headers stay
            _assert_next_response_follows(rest, closed)


@pytest.mark.parametrize("style", styles())
def test_head_request_through_the_chain_keeps_its_length_and_sends_no_body(serve, style):
    with serve(_pipeline(style)) as s:
        data, closed = two_requests(s.port, request("HEAD", "/plain"), request("HEAD", "/plain", close=True))
    head, rest = parse_head(data)
    assert head.status == 200
    assert head.get("content-length") == "5"
    _assert_next_response_follows(rest, closed, head_only=True)


@pytest.mark.parametrize("style", styles())
def test_head_request_turned_into_a_204_drops_the_length(serve, style):
    with serve(_pipeline(style)) as s:
        data, closed = two_requests(s.port, request("HEAD", "/status/204/length"),
                                    request("HEAD", "/plain", close=True))
    head, rest = parse_head(data)
    assert head.status == 204
    assert not {"content-length", "transfer-encoding"} & head.names()
    _assert_next_response_follows(rest, closed, head_only=True)
