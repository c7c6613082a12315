"""What a call_next layer puts on the wire, through a real uvicorn: messages before the response start,
statuses without a body, trailers, and an app that sends no response.

uvicorn implements neither server push, the debug extension nor trailers, so where a test needs them
a thin shim in front of uvicorn's send advertises the extension, records every message the pipeline
sends, and passes the others on to uvicorn, which serves the response.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, wrap
from tests._helpers import WAIT
from tests.test_callnext import Hooked, Passthrough, manager_with

EXTENSIONS = ("http.response.push", "http.response.debug", "http.response.trailers")
#: messages the shim keeps from uvicorn (it would refuse them)
SHIM_ONLY = {"http.response.push", "http.response.debug", "http.response.trailers", "x.example.hint"}


class Shim:
    """What uvicorn runs: the pipeline, with the extensions uvicorn lacks served in front of its send."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.pipeline(scope, receive, send)
            return
        scope = dict(scope, extensions={**scope.get("extensions", {}), **{e: {} for e in EXTENSIONS}})

        async def shim_send(message):
            self.seen.append(message)
            if message["type"] in SHIM_ONLY:
                return
            if message["type"] == "http.response.start":
                message = {k: v for k, v in message.items() if k != "trailers"}
            await send(message)

        await self.pipeline(scope, receive, shim_send)


class Inner(Passthrough):
    name = "inner"
    priority = 900


class HookAfter(Hooked):
    name = "hook_after"
    priority = 950


class EditHeaders(MiddlewarePlugin):
    name = "edit_headers"
    version = "1.0.0"
    priority = 400

    async def process_request(self, request, call_next):
        response = await call_next(request)
        response.headers.add("x-edited", "1")
        return response


CHAINS = {
    "call_next": lambda: [Passthrough()],
    "call_next-editing": lambda: [EditHeaders()],
    "hook+call_next": lambda: [Hooked(), Passthrough()],
    "call_next+hook": lambda: [Passthrough(), HookAfter()],
    "call_next*2": lambda: [Passthrough(), Inner()],
}


@pytest.mark.parametrize("make_chain", list(CHAINS.values()), ids=list(CHAINS))
def test_messages_before_the_start_reach_the_server_untouched_and_in_order(serve, make_chain):
    sent: list[dict] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        ext = scope.get("extensions", {})
        sent.append({"type": "http.response.push", "path": "/style.css", "headers": [(b"accept", b"text/css")]})
        sent.append({"type": "http.response.debug", "info": {"template": "page.html", "context": {"k": 1}}})
        sent.append({"type": "x.example.hint", "value": 103})
        assert "http.response.push" in ext and "http.response.debug" in ext
        for message in sent:
            await send(message)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    shim = Shim(wrap(app, manager_with(*make_chain())))
    with serve(shim) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.content) == (200, b"ok")
    assert [m["type"] for m in shim.seen] == ["http.response.push", "http.response.debug", "x.example.hint",
                                              "http.response.start", "http.response.body"]
    assert all(a is b for a, b in zip(shim.seen[:3], sent))      # the app's own messages, unchanged


class SetStatus(MiddlewarePlugin):
    """Sets the status the request asks for (x-status) on the app's response."""

    name = "set_status"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        response = await call_next(request)
        if "x-status" in request.headers:
            response.status = int(request.headers["x-status"])
        return response


def _app_with_body(status: int, framing: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/plain"), (b"x-app", b"1")]
        headers.append((b"content-length", b"10") if framing == "length" else (b"transfer-encoding", b"chunked"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await send({"type": "http.response.body", "body": b"world", "more_body": False})
    return app


def _exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send each request on one connection after the previous response's head; the heads, and
    what followed the last one."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        buf = b""
        for request in requests:
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                assert chunk, f"the connection closed; got {buf!r}"
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            out.append(head)
            if request is not requests[-1]:
                # a bodiless response: nothing may follow its head but the next response
                assert buf == b"", f"bytes after a bodiless response's head: {buf!r}"
    return out


def _head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}


@pytest.mark.parametrize("framing", ["length", "chunked"])
@pytest.mark.parametrize("case", ["plugin-204", "plugin-304", "app-204", "app-304"])
def test_a_status_without_a_body_goes_out_without_body_or_framing_and_the_connection_lives(serve, case, framing):
    who, status = case.split("-")
    app = _app_with_body(int(status) if who == "app" else 200, framing)
    ask = f"x-status: {status}\r\n" if who == "plugin" else ""
    with serve(wrap(app, manager_with(SetStatus()))) as s:
        first, second = _exchange(
            s.port,
            f"GET /a HTTP/1.1\r\nHost: t\r\n{ask}\r\n".encode(),
            b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        line, headers = _head(first)
        assert line.startswith(f"HTTP/1.1 {status} ")
        assert "content-length" not in headers and "transfer-encoding" not in headers
        assert headers["x-app"] == "1"                       # the other headers stay
        # the next request on the same connection gets its own, whole response
        assert _head(second)[0].startswith(f"HTTP/1.1 {status if who == 'app' else 200} ")
        if who == "plugin":
            with httpx.Client(timeout=WAIT) as client:
                r = client.get(s.url + "/c")
                assert (r.status_code, r.content) == (200, b"helloworld")


def test_head_keeps_the_length_of_get_through_a_call_next_layer(serve):
    with serve(wrap(_app_with_body(200, "length"), manager_with(SetStatus()))) as s:
        head, after = _exchange(s.port, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        line, headers = _head(head)
    assert line.startswith("HTTP/1.1 200 ")
    assert headers["content-length"] == "10"
    assert _head(after)[0].startswith("HTTP/1.1 200 ")


@pytest.mark.parametrize("make_chain", list(CHAINS.values()), ids=list(CHAINS))
def test_trailers_flag_and_trailers_message_pass_through(serve, make_chain):
    trailers = {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": False}

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"trailer", b"x-checksum")]})
        await send({"type": "http.response.body", "body": b"data", "more_body": False})
        await send(trailers)

    shim = Shim(wrap(app, manager_with(*make_chain())))
    with serve(shim) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.content) == (200, b"data")
    start, body, last = shim.seen
    assert start["type"] == "http.response.start" and start["trailers"] is True
    assert body["body"] == b"data"
    assert last is trailers


def test_an_app_that_returns_without_a_response_gets_a_500_and_a_warning(serve, caplog):
    async def app(scope, receive, send):
        return None

    plugin = Passthrough()
    with serve(wrap(app, manager_with(plugin))) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
    assert (r.status_code, r.json()) == (500, {"error": "Internal Server Error"})
    assert plugin.log == ["before", "after"]
    warned = [rec.getMessage() for rec in caplog.records if "without sending a response" in rec.getMessage()]
    assert warned == ["plugin 'passthrough' 1.0.0: the app returned without sending a response; "
                      "the client gets a 500"]
