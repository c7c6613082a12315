"""RequestId: every request gets an id the app and the client both see."""

from __future__ import annotations

import re

import httpx
import pytest

from covet_pipe import PluginManager, wrap
from covet_pipe.builtin import RequestId


async def echo_id_app(scope, receive, send):
    """200 whose body is the x-request-id the app saw."""
    if scope["type"] != "http":
        return
    body = dict(scope["headers"]).get(b"x-request-id", b"<none>")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def served(serve):
    def start(**options):
        manager = PluginManager()
        manager.register(RequestId(**options))
        return serve(wrap(echo_id_app, manager))
    return start


def test_request_without_id_gets_new_id_seen_by_app_and_client(served):
    with served() as s:
        first = httpx.get(s.url)
        second = httpx.get(s.url)
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.text == first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


def test_plain_incoming_id_is_kept(served):
    with served() as s:
        r = httpx.get(s.url, headers={"x-request-id": "abc-123.x:y"})
    assert r.headers["x-request-id"] == "abc-123.x:y"
    assert r.text == "abc-123.x:y"


@pytest.mark.parametrize("incoming", ["has space", "x" * 129, "a;b=c", ""], ids=["space", "long", "punct", "empty"])
def test_unsafe_incoming_id_is_replaced(served, incoming):
    with served() as s:
        r = httpx.get(s.url, headers={"x-request-id": incoming})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert r.text == r.headers["x-request-id"]


def test_untrusted_incoming_id_is_replaced_and_custom_header_used(served):
    with served(header="X-Trace", trust_incoming=False) as s:
        r = httpx.get(s.url, headers={"x-trace": "client-chosen"})
    assert r.headers["x-trace"] != "client-chosen"
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-trace"])


@pytest.mark.parametrize("header", ["", "x request id", "x_id"])
def test_bad_header_name_raises_valueerror(header):
    with pytest.raises(ValueError, match="header name like 'x-request-id'"):
        RequestId(header=header)
