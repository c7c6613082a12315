"""GZip: compress responses for clients that accept gzip, as a body transform (nothing is buffered).

Semantics follow Starlette's ``GZipMiddleware`` (same defaults, same skipped content types, Vary,
Content-Length only when the body came whole, a sync flush after each streamed chunk so streams
stay streams: the same bytes on the wire), with four differences: ``Accept-Encoding`` is parsed
(``gzip;q=0`` refuses gzip, where Starlette looks for the substring); a HEAD gets the headers its GET
would (Starlette compresses the empty body and sends its length); a Vary that already names
Accept-Encoding is left as it is (Starlette repeats it); and a client without gzip gets
``Vary: Accept-Encoding`` on any response not known to be short, where Starlette waits for the body
to leave it off a short one.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Iterable

from covet_pipe import MiddlewarePlugin, RequestContext, Response

#: content types left uncompressed (already compressed, or a stream the client reads as it comes);
#: Starlette's list. "type/*" covers a whole major type.
EXCLUDED_CONTENT_TYPES = (
    "application/grpc", "application/gzip", "application/x-gzip", "application/zip", "audio/*",
    "font/woff", "font/woff2", "image/avif", "image/gif", "image/jpeg", "image/png", "image/webp",
    "text/event-stream", "video/*",
)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding value accepts gzip (RFC 9110 §12.5.3: a q of 0 refuses it)."""
    star: bool | None = None
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding in ("gzip", "x-gzip"):
            return q > 0
        if coding == "*":
            star = q > 0
    return bool(star)


def _excluded(content_type: str, excluded: frozenset[str]) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    kinds = {media, media.partition("/")[0] + "/*"}
    if media.startswith("application/grpc+"):
        kinds.add("application/grpc")
    return not kinds.isdisjoint(excluded)


def _add_vary(response: Response) -> None:
    values = response.headers.getall("vary")
    tokens = {t.strip().lower() for v in values for t in v.split(",")}
    if "*" not in tokens and "accept-encoding" not in tokens:
        response.headers.set("vary", ", ".join([*values, "Accept-Encoding"]))


class _Compress:
    """The body transform: gzip chunk by chunk; a short body in one message is left as it is."""

    __slots__ = ("plugin", "response", "compress", "first")

    def __init__(self, plugin: "GZip", response: Response) -> None:
        self.plugin = plugin
        self.response = response
        self.compress: zlib._Compress | None = None
        self.first = True

    def __call__(self, chunk: bytes, last: bool) -> Any:
        plugin = self.plugin
        if self.first:
            self.first = False
            if last and len(chunk) < plugin.minimum_size:
                return chunk            # the whole body, and short: not worth it (no headers change)
            _add_vary(self.response)
            self.response.headers.set("content-encoding", "gzip")
            self.compress = zlib.compressobj(plugin.compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        if self.compress is None:
            return chunk
        if not chunk and not last:
            return b""
        if len(chunk) >= plugin.thread_minimum_size:
            # a large chunk would hold the event loop: compress it in a worker thread
            return asyncio.get_running_loop().run_in_executor(None, self._gzip, chunk, last)
        return self._gzip(chunk, last)

    def _gzip(self, chunk: bytes, last: bool) -> bytes:
        c = self.compress
        assert c is not None
        return c.compress(chunk) + (c.flush() if last else c.flush(zlib.Z_SYNC_FLUSH))


class GZip(MiddlewarePlugin):
    """Compresses responses of at least ``minimum_size`` bytes for clients that accept gzip.

    Left alone: responses already content-encoded, partial ones (206), statuses with no content,
    the ``exclude_content_types`` (``text/event-stream``, images, archives ...), and bodies known
    (Content-Length) or seen (one message) to be shorter than ``minimum_size``. A compressed
    response gets ``Content-Encoding: gzip`` and ``Vary: Accept-Encoding``; its Content-Length is
    the compressed length when the app sent the body in one message, else none (the server chunks
    it). A client without gzip gets ``Vary: Accept-Encoding`` on what could have been compressed,
    and the body untouched. Chunks of ``thread_minimum_size`` bytes or more are compressed in a
    worker thread.
    """

    name = "gzip"
    version = "1.0.0"
    priority = 5                # outermost: compresses what the other plugins' transforms made
    failure_policy = "open"     # a response can go out uncompressed

    def __init__(self, minimum_size: int = 500, compresslevel: int = 9, *,
                 thread_minimum_size: int = 128 * 1024,
                 exclude_content_types: Iterable[str] = EXCLUDED_CONTENT_TYPES) -> None:
        if not isinstance(minimum_size, int) or isinstance(minimum_size, bool) or minimum_size < 0:
            raise ValueError(f"GZip(minimum_size=...): expected a number of bytes >= 0, got {minimum_size!r}")
        if not isinstance(compresslevel, int) or isinstance(compresslevel, bool) or not 0 <= compresslevel <= 9:
            raise ValueError(f"GZip(compresslevel=...): expected 0 (none) to 9 (smallest), got {compresslevel!r}")
        if not isinstance(thread_minimum_size, int) or thread_minimum_size < 1:
            raise ValueError(f"GZip(thread_minimum_size=...): expected a number of bytes >= 1, "
                             f"got {thread_minimum_size!r}")
        self.minimum_size = minimum_size
        self.compresslevel = compresslevel
        self.thread_minimum_size = thread_minimum_size
        self.exclude_content_types = frozenset(t.partition(";")[0].strip().lower()
                                               for t in exclude_content_types)

    def process_response(self, response: Response, ctx: RequestContext) -> None:
        status = response.status
        if status < 200 or status in (204, 206, 304):
            return
        headers = response.headers
        if "content-encoding" in headers or _excluded(headers.get("content-type") or "",
                                                       self.exclude_content_types):
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) < self.minimum_size:
            return
        accepts = accepts_gzip(ctx.request.headers.get("accept-encoding") or "")
        if ctx.request.method == "HEAD":
            # no body goes out (and no transform runs): the headers a GET would get, whose
            # compressed length is not known here
            _add_vary(response)
            if accepts:
                headers.set("content-encoding", "gzip")
                headers.remove("content-length")
            return
        if not accepts:
            _add_vary(response)     # the body is left as it is (no transform: its framing too)
            return
        response.transform_body(_Compress(self, response))
