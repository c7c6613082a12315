"""The listener around HTTP/1.1: lifespan state, root_path, access log, limits in detail, shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

import pytest

from tests.server.conftest import WAIT, exchange

H = b"Host: t\r\n"


def test_lifespan_state_reaches_each_request_as_a_copy(covet_server: Any) -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            for _ in range(2):
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["db"] = "ready"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            seen = dict(scope["state"])
            scope["state"]["mutated"] = True          # must not leak into the next request
            body = json.dumps(seen).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    with covet_server(app) as s:
        replies, _ = exchange(s.port, b"GET / HTTP/1.1\r\n" + H + b"\r\n" * 2 + b"GET / HTTP/1.1\r\n" + H + b"\r\n",
                              expect=2)
    assert [json.loads(r.body) for r in replies] == [{"db": "ready"}] * 2


def test_root_path_prefixes_path_like_uvicorn(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, root_path="/api") as s:
        (r,), _ = exchange(s.port, b"GET /items?x=1 HTTP/1.1\r\n" + H + b"\r\n")
    body = json.loads(r.body)
    assert (body["path"], body["raw_path"], body["query"]) == ("/api/items", "/api/items", "x=1")


def test_access_log_names_method_path_and_status(covet_server: Any, echo: Any, caplog: Any) -> None:
    with caplog.at_level(logging.INFO, "covet_pipe.access"), covet_server(echo, access_log=True) as s:
        exchange(s.port, b"GET /logged?q=2 HTTP/1.1\r\n" + H + b"\r\n")
    lines = [r.getMessage() for r in caplog.records if r.name == "covet_pipe.access"]
    assert any('"GET /logged?q=2 HTTP/1.1" 200' in line for line in lines), lines


def test_answer_before_the_body_keeps_the_connection_usable(covet_server: Any) -> None:
    async def early(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": scope["path"][1:3].encode()})

    with covet_server(early, body_timeout=0.5) as s:
        pieces = [b"POST /p1 HTTP/1.1\r\n" + H + b"Content-Length: 6\r\n\r\nabc",
                  b"def" + b"GET /p2 HTTP/1.1\r\n" + H + b"\r\n"]
        replies, closed = exchange(s.port, pieces, pause=0.2, expect=2)
        stalled, stalled_closed = exchange(s.port, pieces, pause=1.0, expect=2, timeout=3)
    assert [(r.status, r.body) for r in replies] == [(202, b"p1"), (202, b"p2")]
    assert not closed
    # the rest of the body stalled past body_timeout: closed, and no unsolicited 408
    assert [(r.status, r.body) for r in stalled] == [(202, b"p1")] and stalled_closed


def _answers_then(fail: bool) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        if fail:
            raise RuntimeError("after the response")
    return app


def _second_request(port: int) -> tuple[bytes, bool]:
    """A GET, its whole answer, then a second GET on the same socket: the bytes read, and whether it closed."""
    get = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
    data = b""
    deadline = time.monotonic() + WAIT
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        c.sendall(get)
        while b"\r\n\r\nok" not in data and time.monotonic() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                return data, True
            data += chunk
        try:
            c.sendall(get)
        except (BrokenPipeError, ConnectionResetError):
            return data, True
        while data.count(b"\r\n\r\nok") < 2 and time.monotonic() < deadline:
            try:
                chunk = c.recv(4096)
            except ConnectionResetError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
    return data, False


@pytest.mark.parametrize("server", ["covet-pipe", "uvicorn"])
@pytest.mark.parametrize("fail", [True, False], ids=["raises", "returns"])
def test_an_app_raising_after_its_response_closes_the_connection(covet_server: Any, caplog: Any,
                                                                   server: str, fail: bool) -> None:
    from tests.conftest import Served
    app = _answers_then(fail)
    with caplog.at_level(logging.ERROR):
        if server == "uvicorn":
            with Served(app, http="httptools", lifespan="off") as uv:
                data, closed = _second_request(uv.port)
        else:
            with covet_server(app, lifespan="off") as s:
                data, closed = _second_request(s.port)
    assert data.startswith(b"HTTP/1.1 200")
    if fail:      # the first response whole, then the close: the second request is not answered
        assert closed and data.count(b"HTTP/1.1 200") == 1
        if server == "covet-pipe":        # (uvicorn's own logger does not propagate to caplog)
            assert any("Exception in ASGI application" in r.getMessage() for r in caplog.records)
    else:
        assert not closed and data.count(b"HTTP/1.1 200") == 2


def test_content_length_over_the_limit_gets_413_before_the_app_runs(covet_server: Any) -> None:
    calls: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    with covet_server(app, max_body_bytes=1000) as s:
        (r,), closed = exchange(s.port, b"POST /up HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
                                b"Content-Length: 1001\r\n\r\n")
    assert r.status == 413 and closed and calls == []


def test_header_limit_counts_the_request_line(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, max_header_bytes=1024) as s:
        (ok,), _ = exchange(s.port, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n" + H + b"\r\n")
        (big,), closed = exchange(s.port, b"GET /" + b"a" * 900 + b" HTTP/1.1\r\n" + H + b"X: " + b"b" * 200
                                  + b"\r\n\r\n")
        (long,), long_closed = exchange(s.port, b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n")
    assert ok.status == 200
    assert big.status == 431 and closed
    assert long.status == 414 and long_closed, "the target alone over the limit: 414 (RFC 9112 §3)"


def test_shutdown_closes_idle_keepalive_and_finishes_the_busy_one(covet_server: Any) -> None:
    release = asyncio.Event()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/wait":
            await asyncio.wait_for(release.wait(), WAIT)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    server = covet_server(app, shutdown_timeout=5)
    with server as s:
        idle = socket.create_connection(("127.0.0.1", s.port), timeout=WAIT)
        idle.sendall(b"GET /fast HTTP/1.1\r\n" + H + b"\r\n")
        assert idle.recv(65536).endswith(b"ok")
        busy = socket.create_connection(("127.0.0.1", s.port), timeout=WAIT)
        busy.sendall(b"GET /wait HTTP/1.1\r\n" + H + b"\r\n")
        time.sleep(0.2)
        stopping = asyncio.run_coroutine_threadsafe(s.listener.shutdown(), s.loop)
        assert idle.recv(65536) == b"", "the idle keep-alive connection is closed at once"
        time.sleep(0.2)
        assert not stopping.done(), "shutdown waits for the busy request"
        s.loop.call_soon_threadsafe(release.set)
        stopping.result(WAIT)
        reply = b""
        for _ in range(100):
            chunk = busy.recv(65536)
            if not chunk:
                break
            reply += chunk
        idle.close()
        busy.close()
    assert reply.startswith(b"HTTP/1.1 200") and b"connection: close" in reply and reply.endswith(b"ok")


def test_trusted_proxy_option_puts_the_proxy_address_in_the_scope(covet_server: Any, echo: Any) -> None:
    async def client_of(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            body = json.dumps(scope["client"]).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

    request = b"GET / HTTP/1.1\r\n" + H + b"\r\n"
    proxied = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 80\r\n" + request
    with covet_server(client_of, trusted_proxies=["127.0.0.1"]) as s:
        (via_proxy,), _ = exchange(s.port, proxied)
        (direct,), _ = exchange(s.port, request)
    with covet_server(client_of) as s:
        untrusted, closed = exchange(s.port, proxied)
    assert json.loads(via_proxy.body) == ["203.0.113.7", 40000]
    assert json.loads(direct.body)[0] == "127.0.0.1"
    assert untrusted == [] and closed     # no PROXY layer: no protocol claims the bytes
