"""Differential: the same raw requests to uvicorn+httptools and to covet-pipe's listener, same app.

Each case goes over a fresh raw socket to both servers; status codes and bodies must be equal,
and a malformed request must get a 400 and a closed connection (never a traceback, never a
second, smuggled request answered). The differences below are by design and listed with why.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.server.conftest import WAIT, echo_app, exchange, parse_replies

H = b"Host: example.com\r\n"

#: id -> (raw bytes, replies expected from uvicorn, HEAD flags)
CORPUS: dict[str, tuple[bytes, int, list[bool] | None]] = {
    "get": (b"GET / HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "get-query-percent": (b"GET /a%20b/c%2Fd?x=1&y=%41 HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "get-fragment": (b"GET /frag?q=1#top HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "absolute-form": (b"GET http://example.com/abs?z=9 HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "asterisk-options": (b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "header-case-and-repeat": (b"GET / HTTP/1.1\r\n" + H + b"X-Dup: 1\r\nx-dup: 2\r\nX-Mixed-CASE: V\r\n\r\n",
                               1, None),
    "post-content-length": (b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\nhello world", 1, None),
    "post-chunked": (b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", 1, None),
    "post-chunked-trailer": (b"POST /t HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n", 1, None),
    "head": (b"HEAD /h HTTP/1.1\r\n" + H + b"\r\n", 1, [True]),
    "pipelined-3": (b"GET /1 HTTP/1.1\r\n" + H + b"\r\nPOST /2 HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
                    b"GET /3 HTTP/1.1\r\n" + H + b"\r\n", 3, None),
    "pipelined-head-then-get": (b"HEAD /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\n", 2,
                                [True, False]),
    "expect-100-continue": (b"POST /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
                            1, None),
    "http10": (b"GET /old HTTP/1.0\r\n\r\n", 1, None),
    "connection-close": (b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", 1, None),
    "upgrade-not-websocket": (b"GET /up HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 1, None),
    "empty-body-post": (b"POST /z HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n", 1, None),
    # malformed and smuggling shapes: 400 and close
    "cl-and-te": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "te-and-cl": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                  b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "duplicate-content-length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nContent-Length: 30\r\n\r\n"
                                 b"abcGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "te-not-chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 1, None),
    "te-obfuscated": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n"
                      b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "bare-lf": (b"GET / HTTP/1.1\n" + b"Host: example.com\n\n", 1, None),
    "obs-fold": (b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n", 1, None),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", 1, None),
    "nul-in-header": (b"GET / HTTP/1.1\r\n" + H + b"X-Nul: a\x00b\r\n\r\n", 1, None),
    "bad-chunk-size": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                       1, None),
    "bad-version": (b"GET / HTTP/9.9\r\n" + H + b"\r\n", 1, None),
    "garbage-method": (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "non-ascii-target": (b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "negative-content-length": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 1, None),
    # broken request lines (RFC 9112 3: SP between the three parts; 2.2: empty lines before it may be
    # ignored): HTTP claims them at detection (HTTP11Protocol.detect), so they get uvicorn's answer (a
    # 400; a 200 where llhttp ignores the empty lines), not a silent close
    "tabs-in-request-line": (b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "nul-method": (b"\x00 / HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "three-empty-lines-first": (b"\r\n\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 1, None),   # 200
    "bare-lf-empty-lines-first": (b"\n\n\nGET / HTTP/1.1\r\n" + H + b"\r\n", 1, None),        # 200
    "blank-lines-with-spaces-first": (b" \r\n \r\n \r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    "space-before-method": (b" GET / HTTP/1.1\r\n" + H + b"\r\n", 1, None),
    # RFC 9112 §6.1: a request's Transfer-Encoding must end in chunked (covet-pipe refuses it before the app runs)
    "te-identity": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nabc", 1, None),
    "te-chunked-then-gzip-fields": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                                    b"Transfer-Encoding: gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1, None),
    "te-http10-gzip": (b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\nabc", 1, None),
    "te-gzip-then-chunked": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip,\tCHUNKED\r\n\r\n"
                             b"3\r\nabc\r\n0\r\n\r\n", 1, None),
    # RFC 9110 §5.5: trailing whitespace is not part of a field value (llhttp keeps it, uvicorn strips it)
    "trailing-whitespace-in-values": (b"GET / HTTP/1.1\r\nHost: example.com \r\nX-A: v \t \r\nX-B:\t\r\n\r\n",
                                      1, None),
    "trailing-whitespace-in-te": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked \r\n\r\n"
                                  b"3\r\nabc\r\n0\r\n\r\n", 1, None),
    # RFC 9112 §3.2: valid Host values, and HTTP/1.0 needs none (the "http10" case above)
    "host-empty": (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 1, None),
    "host-with-port": (b"GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", 1, None),
    "host-ip-literal": (b"GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n", 1, None),
}

#: by design, covet-pipe answers differently (uvicorn has no header or body size limit)
LIMITS = {"max_header_bytes": 8 * 1024, "max_body_bytes": 64 * 1024}
DIFFERENCES: dict[str, tuple[bytes, list[int], str]] = {
    "header-too-large": (b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"a" * 16 * 1024 + b"\r\n\r\n", [431],
                         "max_header_bytes: uvicorn (httptools) has no limit and answers 200"),
    "declared-body-too-large": (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100000\r\n\r\n" + b"x" * 100000,
                                [413], "max_body_bytes (declared): uvicorn reads any size and answers 200"),
    "chunked-body-too-large": (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                               + (b"4000\r\n" + b"y" * 0x4000 + b"\r\n") * 6 + b"0\r\n\r\n", [413],
                               "max_body_bytes (received): uvicorn answers 200"),
    "http11-without-host": (b"GET / HTTP/1.1\r\n\r\n", [400],
                            "RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get a 400; uvicorn answers 200 "
                            "(require_host=False serves it)"),
    "two-host-fields": (b"GET / HTTP/1.1\r\n" + H + b"Host: other.example\r\n\r\n", [400],
                        "RFC 9112 §3.2: more than one Host MUST get a 400; uvicorn answers 200"),
    "invalid-host": (b"GET / HTTP/1.1\r\nHost: example.com/../evil\r\n\r\n", [400],
                     "RFC 9112 §3.2: an invalid Host MUST get a 400; uvicorn answers 200"),
    "target-too-long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", [414],
                        "RFC 9112 §3: a target over max_header_bytes is 414, not 431; uvicorn has no limit (200)"),
    "http2-request-line": (b"GET / HTTP/2.0\r\n" + H + b"\r\n", [505],
                           "RFC 9110 §15.6.6 / RFC 9112 §2.3: HTTP/2 is not spoken on an HTTP/1.1 connection; "
                           "uvicorn (llhttp passes 2.0) answers 200"),
    "http09-request-line": (b"GET / HTTP/0.9\r\n" + H + b"\r\n", [505],
                            "RFC 9110 §15.6.6: only HTTP/1.x is served; uvicorn answers 200"),
    "absolute-form-without-path": (b"GET http://example.com?q=1 HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
                                   [200],
                                   "RFC 9110 §4.2.3: an empty path is '/'; uvicorn fails on it and answers 400"),
    "te-chunked-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", [400],
                          "RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message MUST be treated as faulty "
                          "framing; uvicorn (llhttp) reads it as chunked and answers 200"),
    "valid-then-malformed": (b"GET /ok HTTP/1.1\r\n" + H + b"\r\nGET / HTTP/1.1\n\n", [200, 400],
                             "uvicorn writes the 400 at once, ahead of (and instead of) the response to the "
                             "valid request before it; covet-pipe answers the valid request first, in order"),
}


@pytest.fixture(scope="module")
def servers() -> Any:
    """uvicorn+httptools and covet-pipe serving echo_app, each on its own port."""
    from tests.conftest import Served
    from tests.server.conftest import CovetServer
    with Served(echo_app, http="httptools", lifespan="on") as uv, CovetServer(echo_app, **LIMITS) as cp:
        yield uv.port, cp.port


def _shape(replies: list[Any]) -> list[tuple[int, Any]]:
    out = []
    for r in replies:
        body: Any = r.body
        if r.body and r.header("content-type") == "application/json":
            body = json.loads(body)
        out.append((r.status, body))
    return out


@pytest.mark.parametrize("case", list(CORPUS), ids=list(CORPUS))
def test_same_status_and_body_as_uvicorn(servers: Any, case: str) -> None:
    raw, expect, heads = CORPUS[case]
    uv_port, cp_port = servers
    uv, uv_closed = exchange(uv_port, raw, expect=expect, heads=heads)
    cp, cp_closed = exchange(cp_port, raw, expect=expect, heads=heads)
    assert len(uv) == expect, f"uvicorn answered {uv}"
    assert _shape(cp) == _shape(uv)
    if uv[-1].status == 400:
        assert cp_closed, "a malformed request must close the connection"
        assert b"Traceback" not in cp[-1].body
        assert len(cp) == expect, "a smuggled request must not be answered"


@pytest.mark.parametrize("case", list(DIFFERENCES), ids=list(DIFFERENCES))
def test_listed_differences_from_uvicorn(servers: Any, case: str) -> None:
    raw, statuses, _why = DIFFERENCES[case]
    _, cp_port = servers
    cp, closed = exchange(cp_port, raw, expect=len(statuses))
    assert [r.status for r in cp] == statuses
    assert closed


#: by design, the scope differs: id -> (raw bytes, header name, covet-pipe's value, uvicorn's value, why)
SCOPE_DIFFERENCES: dict[str, tuple[bytes, str, str, str, str]] = {
    "absolute-form-authority": (b"GET http://a.example:8080/abs HTTP/1.1\r\nHost: b.example\r\n\r\n", "host",
                                "a.example:8080", "b.example",
                                "RFC 9112 §3.2.2: the target's authority replaces Host; uvicorn keeps Host"),
}


@pytest.mark.parametrize("case", list(SCOPE_DIFFERENCES), ids=list(SCOPE_DIFFERENCES))
def test_listed_scope_differences_from_uvicorn(servers: Any, case: str) -> None:
    raw, name, ours, theirs, _why = SCOPE_DIFFERENCES[case]
    seen = []
    for port in servers:
        (r,), _ = exchange(port, raw)
        seen.append([v for n, v in json.loads(r.body)["headers"] if n == name])
    assert seen == [[theirs], [ours]]


#: by design, the bytes on the wire differ: id -> (raw bytes, what uvicorn sends and covet-pipe does not, why)
WIRE_DIFFERENCES: dict[str, tuple[bytes, bytes, str]] = {
    "expect-100-continue-http10": (b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
                                   b"100 Continue", "RFC 9110 §10.1.1: a server MUST ignore 100-continue in an "
                                   "HTTP/1.0 request; uvicorn sends the 100 (same final answer)"),
}


def _all_bytes(port: int, raw: bytes) -> bytes:
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(raw)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return buf
            buf += chunk
    raise AssertionError(f"the connection stayed open: {buf!r}")


@pytest.mark.parametrize("case", list(WIRE_DIFFERENCES), ids=list(WIRE_DIFFERENCES))
def test_listed_wire_differences_from_uvicorn(servers: Any, case: str) -> None:
    raw, marker, _why = WIRE_DIFFERENCES[case]
    uv, cp = (_all_bytes(port, raw) for port in servers)
    assert marker in uv and marker not in cp
    assert _shape(parse_replies(cp)[0]) == _shape(parse_replies(uv)[0])


def _scope_app() -> Any:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        shown = {k: v for k, v in scope.items() if k not in ("client", "server")}
        shown["client_host"] = scope["client"][0]
        shown["server_host"] = scope["server"][0]
        shown["client_type"] = type(scope["client"]).__name__
        shown["headers"] = [[n.decode(), v.decode()] for n, v in scope["headers"]]
        for k in ("raw_path", "query_string"):
            shown[k] = scope[k].decode("latin-1")
        body = json.dumps(shown, sort_keys=True).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize("target", [b"/", b"/a%2Fb%20c?x=1&y=", b"/unicode/%C3%A9?q=%C3%A9", b"http://h/abs?k=v"])
def test_scope_matches_uvicorn(target: bytes) -> None:
    from tests.conftest import Served
    from tests.server.conftest import CovetServer
    app = _scope_app()
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: h\r\nUser-Agent: diff\r\nX-A: 1\r\n\r\n"
    with Served(app, http="httptools", lifespan="off") as uv, CovetServer(app, lifespan="off") as cp:
        (u,), _ = exchange(uv.port, raw)
        (c,), _ = exchange(cp.port, raw)
    assert json.loads(c.body) == json.loads(u.body)


# -- limits and deadlines at their edges: same answers where uvicorn has no limit to differ by ----------


def test_pipelined_gets_in_large_writes_are_all_answered_by_both(servers: Any) -> None:
    # RFC 9112 §9.3.2: pipelined requests are answered in order. 67 KB writes end inside a head and
    # are larger than the listener's max_header_bytes (8 KiB here): every head still fits its limit.
    from tests.server.test_http11_limits import _pipeline
    count = 20_000
    for port in servers:
        seen, tail, closed = _pipeline(port, count, time.monotonic() + 60)
        assert (seen, closed) == (count, False), (port, tail)


def test_body_past_the_limit_after_an_early_answer(servers: Any) -> None:
    # RFC 9110 §15.5.14: a server may close the connection rather than read a body too large.
    # uvicorn reads and drops all of it and serves the next request; covet-pipe closes past
    # max_body_bytes (64 KiB here) although its app (ok_app, which never reads the body) has answered.
    from tests.conftest import Served
    from tests.server.conftest import CovetServer
    from tests.server.test_http11_limits import ok_app
    body = (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 64 + b"0\r\n\r\n"      # 4 MiB
    raw = [b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n", body,
           b"GET /next HTTP/1.1\r\n" + H + b"\r\n"]
    with Served(ok_app, http="httptools", lifespan="off") as uv, \
            CovetServer(ok_app, lifespan="off", **LIMITS) as cp:
        uv_replies, uv_closed = exchange(uv.port, raw, expect=2, pause=0.1)
        cp_replies, cp_closed = exchange(cp.port, raw, expect=2, pause=0.1)
    assert [r.status for r in uv_replies] == [200, 200] and not uv_closed
    assert [r.status for r in cp_replies] == [200] and cp_closed


def test_slow_head_closed_at_header_timeout_from_accept(servers: Any) -> None:
    # RFC 9112 §9.5: a server may close a connection at any time. uvicorn has no header deadline:
    # a head trickling a byte a second keeps its connection; covet-pipe's header_timeout (2 s here)
    # counts from accept.
    from tests.server.conftest import CovetServer
    from tests.server.test_http11_limits import SLOW_HEAD, _trickle, ok_app
    bound = 2.0 + 1 + 1.5
    with CovetServer(ok_app, lifespan="off", header_timeout=2.0) as cp:
        _, cp_elapsed = _trickle(cp.port, SLOW_HEAD, 1.0, bound + 5)
    uv_port, _ = servers
    _, uv_elapsed = _trickle(uv_port, SLOW_HEAD, 1.0, bound)
    assert cp_elapsed < bound and uv_elapsed == float("inf"), (cp_elapsed, uv_elapsed)
