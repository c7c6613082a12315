"""HTTP/1.1 as a built-in protocol plugin: detection on the request line, the compiled connection."""

from __future__ import annotations

import re
from typing import Any

from covet_pipe.plugin import ProtocolPlugin
from covet_pipe.protocol import MATCH, NEED_MORE, NO
from covet_pipe.server.http11 import _http11

__all__ = ["HTTP11Protocol", "settings_for"]

#: RFC 9110 tchar: the bytes a method token may hold
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MAX_METHOD = 32
_ABSOLUTE = (b"http://", b"https://")
#: a first line that ends like a request line, whatever comes before: HTTP's to answer (400)
_REQUEST_LINE_END = re.compile(rb"[^\r\n]*[ \t]HTTP/\d\.\d[ \t]*\r?$")


def settings_for(server: Any) -> _http11.Settings:
    """The compiled connections' shared settings for *server* (a ServerContext), made once."""
    settings: _http11.Settings | None = server.__dict__.get("_http11_settings")
    if settings is None:
        from covet_pipe.server.http11._ws import WebSocketProtocol
        settings = _http11.Settings(server, WebSocketProtocol)
        server._http11_settings = settings
    return settings


class HTTP11Protocol(ProtocolPlugin):
    """HTTP/1.1 on httptools for any ASGI 3 app (keep-alive, pipelining, websockets).

    It claims a connection whose first bytes, after any blank lines (RFC 9112 2.2), start a
    request line: a method token followed by a space (or a tab) and a target that starts
    with ``/``, ``*`` or ``http(s)://``, or a ``CONNECT``; or a whole first line that ends
    in a space or tab and ``HTTP/x.y`` (so a malformed request line, a NUL method say, still
    gets its 400). An inline Redis command such as ``PING\\r\\n`` or ``GET key\\r\\n`` is
    not claimed.
    """

    name = "http11"
    version = "1.0.0"
    protocol_name = "http"
    priority = 100

    def supported_protocols(self) -> list[str]:
        return ["http/1.1", "http/1.0"]

    def detect(self, data: bytes) -> str:
        """``MATCH`` on a request line's start, ``NEED_MORE`` while it could still be one."""
        start = 0
        while start < len(data) and data[start] in b"\r\n \t":
            start += 1             # RFC 9112 2.2: a server ignores empty lines before the request line
        if start == len(data):
            return NEED_MORE       # only blank lines so far (max_detect_bytes bounds them)
        i = start
        end = min(len(data), start + _MAX_METHOD + 1)
        while i < end and data[i] in _TCHAR:
            i += 1
        length = i - start
        if i == len(data):
            return NEED_MORE if length <= _MAX_METHOD else NO
        if length == 0 or length > _MAX_METHOD or data[i] not in b" \t":
            return self._request_line(data, start)
        if data[start:i] == b"CONNECT":
            return MATCH
        target = data[i + 1:i + 1 + 8]
        if not target:
            return NEED_MORE
        if target[0] in b"/*":
            return MATCH
        for prefix in _ABSOLUTE:
            if target.startswith(prefix):
                return MATCH
            if prefix.startswith(target):
                return NEED_MORE
        return self._request_line(data, start)

    @staticmethod
    def _request_line(data: bytes, start: int) -> str:
        # A malformed request line that still ends in " HTTP/x.y" is HTTP's to refuse with a
        # 400; anything else is left to the other protocols (no waiting on it).
        eol = data.find(b"\n", start)
        if eol >= 0 and _REQUEST_LINE_END.fullmatch(data, start, eol):
            return MATCH
        return NO

    def connection_protocol(self, conn: Any, server: Any) -> Any:
        """The compiled HTTP/1.1 connection (an asyncio.Protocol) for *conn*."""
        return _http11.connection_factory(conn, settings_for(server))
