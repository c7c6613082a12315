"""HTTP11Protocol.detect: which first bytes the HTTP/1.1 plugin claims, waits on, or leaves."""

from __future__ import annotations

import pytest

from covet_pipe.protocol import MATCH, NEED_MORE, NO
from covet_pipe.server.http11 import HTTP11Protocol

CASES = [
    (b"GET / HTTP/1.1\r\n", MATCH),
    (b"GET /", MATCH),
    (b"OPTIONS * HTTP/1.1", MATCH),
    (b"GET http://h/x HTTP/1.1", MATCH),
    (b"GET https://h/", MATCH),
    (b"CONNECT h:443 HTTP/1.1", MATCH),
    (b"\r\nGET / HTTP/1.1", MATCH),                 # a CRLF before the request line is ignored
    (b"G(T / HTTP/1.1\r\n", MATCH),                 # malformed, but HTTP's to answer with 400
    (b"GET\t/\tHTTP/1.1\r\n", MATCH),               # tabs for spaces: a broken request line, 400
    (b"GET\t/", MATCH),                            # ... even before the line is whole
    (b"\x00 / HTTP/1.1\r\n", MATCH),                # a NUL method: the line ends like a request line
    (b"GET / HTTP/1.1\t\r\n", MATCH),
    (b"\r\n\r\n\r\nGET / HTTP/1.1\r\n", MATCH),      # any number of empty lines first
    (b"\r\n\r\n\r\n", NEED_MORE),                   # only empty lines so far
    (b" \r\n\t\r\n GET / HTTP/1.1\r\n", MATCH),       # blank lines, and blanks before the method
    (b" PING\r\n", NO),                             # redis skips the blanks too
    (b"\x00 / HTTP/1.1", NO),                       # no whole line yet and no method token: not waited on
    (b"\x00\x00\r\n", NO),
    (b"GET\tkey\r\n", NO),                          # a Redis inline command with a tab
    (b"GET key HTTP\r\n", NO),
    (b"\r\n\r\n\x00\r\nQUIT\n", NO),                # the PROXY v2 signature
    (b"", NEED_MORE),
    (b"G", NEED_MORE),
    (b"GET", NEED_MORE),
    (b"GET ", NEED_MORE),
    (b"GET h", NEED_MORE),
    (b"GET https:", NEED_MORE),
    (b"PING\r\n", NO),                              # Redis inline commands are not HTTP
    (b"GET key\r\n", NO),
    (b"SET key value\r\n", NO),
    (b"*1\r\n$4\r\nPING\r\n", NO),                  # RESP arrays
    (b"GET hx", NO),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", NO),    # the PROXY layer's, not HTTP's
    (b"\x16\x03\x01\x02\x00", NO),                  # a TLS ClientHello
    (b"A" * 40, NO),                                # no method token is that long
]


@pytest.mark.parametrize("data,verdict", CASES, ids=[repr(c[0][:20]) for c in CASES])
def test_detect(data: bytes, verdict: str) -> None:
    assert HTTP11Protocol().detect(data) == verdict
