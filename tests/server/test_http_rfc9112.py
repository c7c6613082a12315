"""Where covet-pipe's HTTP/1.1 follows RFC 9112 (and RFC 9110) over llhttp's lax defaults, on real sockets.

Each test names the section it follows; the differences from uvicorn+httptools these make are
listed in tests/server/test_differential_http.py and in docs/protocols.md.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.server.conftest import WAIT, exchange


def _counting_echo(calls: list[str], echo: Any) -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            calls.append(scope["path"])
        await echo(scope, receive, send)
    return app


@pytest.mark.parametrize("head", [
    b"GET /a HTTP/1.1\r\n",                                         # no Host
    b"GET /a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n",   # two
    b"GET /a HTTP/1.0\r\nHost: a.example\r\nHost: a.example\r\n",   # two, even in HTTP/1.0
    b"GET /a HTTP/1.1\r\nHost: a.example/evil\r\n",                 # invalid: '/'
    b"GET /a HTTP/1.1\r\nHost: a b\r\n",                            # invalid: space
    b"GET /a HTTP/1.1\r\nHost: user@a.example\r\n",                 # invalid: userinfo
    b"GET /a HTTP/1.1\r\nHost: a.example:80x\r\n",                  # invalid: port
    b"GET /a HTTP/1.1\r\nHost: [::1\r\n",                           # invalid: unclosed IP-literal
])
def test_a_missing_doubled_or_invalid_host_is_a_400_before_the_app(covet_server: Any, echo: Any,
                                                                    head: bytes) -> None:
    # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code ..."
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo)) as s:
        (r,), closed = exchange(s.port, head + b"\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n", expect=2)
    assert r.status == 400 and closed
    assert calls == []


@pytest.mark.parametrize("host", [b"a.example", b"a.example:8080", b"127.0.0.1:1", b"[::1]:8000", b"[v1.x]",
                                  b"", b"xn--caf-dma.example", b"a.example  "])
def test_a_valid_host_is_served(covet_server: Any, echo: Any, host: bytes) -> None:
    with covet_server(echo) as s:
        (r,), _ = exchange(s.port, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert r.status == 200
    assert ["host", host.decode().strip()] in [[n, v.strip()] for n, v in json.loads(r.body)["headers"]]


def test_http10_needs_no_host(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s:
        (r,), _ = exchange(s.port, b"GET /old HTTP/1.0\r\n\r\n")
    assert r.status == 200 and json.loads(r.body)["path"] == "/old"


def test_require_host_off_serves_http11_without_host_as_uvicorn_does(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, require_host=False) as s:
        (r,), _ = exchange(s.port, b"GET /bare HTTP/1.1\r\n\r\n")
        (two,), closed = exchange(s.port, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert r.status == 200 and json.loads(r.body)["path"] == "/bare"
    assert two.status == 400 and closed, "two Host fields stay a 400: the setting is for a missing one only"


def _host_and_target(reply: Any) -> tuple[list[str], str, str, str]:
    body = json.loads(reply.body)
    return [v for n, v in body["headers"] if n == "host"], body["path"], body["raw_path"], body["query"]


@pytest.mark.parametrize("target, host, path", [
    (b"http://a.example:8080/p%20q?x=1", "a.example:8080", "/p q"),
    (b"https://a.example?x=1", "a.example", "/"),                  # an empty path is "/" (RFC 9110 §4.2.3)
    (b"HTTP://[::1]:81/p?x=1", "[::1]:81", "/p"),
])
def test_absolute_form_authority_replaces_host_and_the_scope_has_the_path_only(
        covet_server: Any, echo: Any, target: bytes, host: str, path: str) -> None:
    # RFC 9112 §3.2.2: "the origin server MUST ignore the received Host header field"
    with covet_server(echo) as s:
        (r,), _ = exchange(s.port, b"GET " + target + b" HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert r.status == 200
    hosts, got_path, raw_path, query = _host_and_target(r)
    assert (hosts, got_path, query) == ([host], path, "x=1")
    assert raw_path == path.replace(" ", "%20")


def test_absolute_form_supplies_host_when_require_host_is_off(covet_server: Any, echo: Any) -> None:
    with covet_server(echo, require_host=False) as s:
        (r,), _ = exchange(s.port, b"GET http://a.example/p HTTP/1.1\r\n\r\n")
    assert _host_and_target(r)[:2] == (["a.example"], "/p")


@pytest.mark.parametrize("target", [b"http://user@a.example/p", b"http:///p", b"http://a b/p", b"http://a:x/p"])
def test_absolute_form_with_an_invalid_authority_is_a_400(covet_server: Any, echo: Any, target: bytes) -> None:
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo)) as s:
        (r,), closed = exchange(s.port, b"GET " + target + b" HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert r.status == 400 and closed and calls == []


def test_a_target_over_the_limit_is_a_414_even_when_it_arrives_in_pieces(covet_server: Any, echo: Any) -> None:
    # RFC 9112 §3: "A server that receives a request-target longer than any URI it wishes to parse
    # MUST respond with a 414 (URI Too Long) status code"
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo), max_header_bytes=2048) as s:
        (r,), closed = exchange(s.port, [b"GET /" + b"a" * 1000, b"b" * 1000, b"c" * 1000 + b" HTTP/1.1\r\n",
                                         b"Host: x\r\n\r\n"], pause=0.05)
    assert r.status == 414 and closed and calls == []


def test_expect_100_continue_is_ignored_in_http10(covet_server: Any, echo: Any) -> None:
    # RFC 9110 §10.1.1: "A server that receives a 100-continue expectation in an HTTP/1.0 request
    # MUST ignore that expectation."
    with covet_server(echo) as s, socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as c:
        c.sendall(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        c.settimeout(0.5)
        with pytest.raises(socket.timeout):
            c.recv(100)              # nothing yet: no 100 Continue, the app is waiting for the body
        c.settimeout(WAIT)
        c.sendall(b"hello")
        buf = b""
        for _ in range(100):
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
    assert buf.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in buf
    assert json.loads(buf.split(b"\r\n\r\n", 1)[1])["body"] == "hello"


@pytest.mark.parametrize("version", [b"2.0", b"0.9"])
def test_a_version_other_than_1x_is_a_505(covet_server: Any, echo: Any, version: bytes) -> None:
    # RFC 9110 §15.6.6: 505 "the server does not support ... the major version of HTTP"
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo)) as s:
        (r,), closed = exchange(s.port, b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
    assert (r.status, r.body, closed, calls) == (505, b"HTTP Version Not Supported", True, [])


@pytest.mark.parametrize("te", [b"gzip", b"identity", b"chunked, gzip", b"xchunked", b"chunked\r\nTransfer-Encoding: br"])
def test_a_request_whose_final_coding_is_not_chunked_is_a_400_before_the_app(covet_server: Any, echo: Any,
                                                                             te: bytes) -> None:
    # RFC 9112 §6.1: "the server MUST respond with the 400 (Bad Request) status code and then close"
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo)) as s:
        (r,), closed = exchange(s.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te
                                + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert (r.status, closed, calls) == (400, True, [])


@pytest.mark.parametrize("te", [b"chunked", b"gzip, chunked"])
def test_transfer_encoding_in_an_http10_request_is_a_400_before_the_app(covet_server: Any, echo: Any,
                                                                        te: bytes) -> None:
    # RFC 9112 §6.1: "A server or client that receives an HTTP/1.0 message containing a Transfer-Encoding
    # header field MUST treat the message as if the framing is faulty ... and close the connection"
    calls: list[str] = []
    with covet_server(_counting_echo(calls, echo)) as s:
        (r,), closed = exchange(s.port, b"POST / HTTP/1.0\r\nTransfer-Encoding: " + te
                                + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert (r.status, closed, calls) == (400, True, [])


def test_a_final_chunked_coding_is_read_as_chunked(covet_server: Any, echo: Any) -> None:
    with covet_server(echo) as s:
        (r,), _ = exchange(s.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip,\t Chunked \r\n\r\n"
                                   b"3\r\nabc\r\n0\r\n\r\n")
    assert r.status == 200 and json.loads(r.body)["body"] == "abc"


def test_trailing_whitespace_is_not_part_of_a_field_value(covet_server: Any, echo: Any) -> None:
    # RFC 9110 §5.5: "a field value does not include leading or trailing whitespace"
    with covet_server(echo) as s:
        (r,), _ = exchange(s.port, b"GET / HTTP/1.1\r\nHost: x \t\r\nX-A: a b  \r\nX-E: \t \r\n\r\n")
    assert json.loads(r.body)["headers"] == [["host", "x"], ["x-a", "a b"], ["x-e", ""]]
