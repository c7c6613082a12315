# Response bodies as streams: the body of a Response a plugin made from an (async) iterator,
# sent chunk by chunk, and the body transforms response hooks add (Response.transform_body).
# Included by _core.pyx before _sending.pxi.

import asyncio as _asyncio

#: what next() returns at the end of a sync stream
cdef object _END = object()


cdef bytes _chunk_of(object chunk, RequestContext ctx):
    # One chunk of a plugin's streamed body, as bytes.
    if type(chunk) is bytes:
        return <bytes>chunk
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return (<str>chunk).encode("utf-8")
    who = _answered_by(ctx)
    raise TypeError(f"{who}: the streamed body of its Response yielded {type(chunk).__name__}; "
                    "yield bytes (or str, sent as UTF-8)")


cdef str _answered_by(RequestContext ctx):
    # "plugin 'x' process_request": the plugin whose request hook answered, for error messages.
    cdef Segment seg = ctx._seg
    if seg is not None and 0 < ctx._ran <= seg.count:
        return f"plugin {(<Entry>seg.hooks[ctx._ran - 1]).name!r} process_request"
    return "a plugin"


async def _until_disconnect(receive):
    # The client hung up (what it still sends of its body is read and dropped).
    while True:
        message = await receive()
        if message.get("type") in ("http.disconnect", "websocket.disconnect"):
            return


async def _close_stream(stream):
    # The stream will not be read (further): let it clean up now, inside the loop.
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(stream, "close", None)
    if close is not None:
        close()


cdef bint _send_raises_when_gone(dict scope):
    # ASGI 2.4: a send to a client that hung up raises OSError; before, it does nothing.
    spec = (scope.get("asgi") or {}).get("spec_version", "2.0")
    try:
        return tuple(int(x) for x in str(spec).split(".")[:2]) >= (2, 4)
    except ValueError:
        return False


async def _chunks(stream, RequestContext ctx):
    # The chunks of a plugin's streamed body, as bytes, whatever kind of iterable it is.
    if hasattr(stream, "__aiter__"):
        async for chunk in stream:
            yield _chunk_of(chunk, ctx)
    elif isinstance(stream, (list, tuple)):
        for chunk in stream:            # in memory already: nothing to wait for
            yield _chunk_of(chunk, ctx)
    else:
        # A sync iterator may block (a file, a socket): each next() runs in a worker thread,
        # as Starlette's StreamingResponse does, so the event loop goes on.
        it = iter(stream)
        loop = _asyncio.get_running_loop()
        while True:
            chunk = await loop.run_in_executor(None, next, it, _END)
            if chunk is _END:
                return
            yield _chunk_of(chunk, ctx)


async def _send_start(send, Response resp, RequestContext ctx, str prefix, Py_ssize_t length):
    start = {"type": prefix + "start", "status": resp._status, "headers": resp._start_headers(length)}
    resp._freeze(ctx._seg, ctx._ran)
    await send(start)


async def _send_stream(send, stream, Response resp, RequestContext ctx, str prefix):
    """Send a plugin's streamed body chunk by chunk, each send awaited (the server's flow control).

    The start goes first, or, with body transforms, once the first chunk has been through them.
    Where a send to a client that hung up does nothing (ASGI before 2.4, as under uvicorn), the
    request's receive (ctx._receive, when there is one) is watched meanwhile, as Starlette's
    StreamingResponse does: once the client is gone, the stream is closed instead of read to its end.
    """
    cdef bint xform = resp._transforms is not None
    cdef bint pending = True
    kind = prefix + "body"
    gone = None
    if ctx._receive is not None and not _send_raises_when_gone(ctx.request.scope):
        gone = _asyncio.ensure_future(_until_disconnect(ctx._receive))
    chunks = _chunks(stream, ctx)
    try:
        if not xform:
            pending = False
            await _send_start(send, resp, ctx, prefix, -1)
        try:
            async for chunk in chunks:
                if gone is not None and gone.done():
                    return
                if xform:
                    chunk = await _transformed(resp, ctx, chunk, False)
                if pending:
                    pending = False
                    await _send_start(send, resp, ctx, prefix, -1)
                if chunk:
                    await send({"type": kind, "body": chunk, "more_body": True})
            tail = await _transformed(resp, ctx, b"", True) if xform else b""
        except _TransformFailed as failure:
            await _transform_failed(send, failure, ctx, pending)
            return
        if pending:
            await _send_start(send, resp, ctx, prefix, len(tail))
        await send({"type": kind, "body": tail, "more_body": False})
    finally:
        if gone is not None:
            gone.cancel()
        await chunks.aclose()
        await _close_stream(stream)


async def _file_chunks(path):
    # http.response.pathsend's file, for transforms to see: 64 KiB reads in a worker thread.
    loop = _asyncio.get_running_loop()
    f = await loop.run_in_executor(None, open, path, "rb")
    try:
        while True:
            chunk = await loop.run_in_executor(None, f.read, 65536)
            if not chunk:
                return
            yield chunk
    finally:
        f.close()


# -- body transforms ---------------------------------------------------------------------------

class _TransformFailed(Exception):
    """A body transform raised (or returned what is not bytes): which one, and what."""

    def __init__(self, entry, exc):
        self.entry = entry
        self.exc = exc


async def _transformed(Response resp, RequestContext ctx, bytes chunk, bint last):
    """One chunk through the response's transforms, in order (a tuple by now)."""
    global _transform_entry
    for fn, entry in <tuple>resp._transforms:
        saved = _transform_entry
        _transform_entry = entry        # an edit it makes is named after it (_started_error)
        if entry is not None:
            ctx._cur = entry            # its ctx.state is its plugin's
        try:
            out = fn(chunk, last)
            if type(out) is not bytes:
                if hasattr(out, "__await__"):
                    out = await out
                if isinstance(out, (bytearray, memoryview)):
                    out = bytes(out)
                elif type(out) is not bytes and not isinstance(out, bytes):
                    raise TypeError(f"a body transform returns bytes, got {type(out).__name__}")
        except Exception as exc:
            raise _TransformFailed(entry, exc)
        finally:
            _transform_entry = saved
        chunk = out
    return chunk


async def _transform_failed(send, failure, RequestContext ctx, bint before_start):
    """Log a failed transform under its plugin's name; before the start, answer for it (a 500).

    After the start there is no answer left to give: the response is cut short (the
    RuntimeError makes the server close the connection).
    """
    entry, exc = failure.entry, failure.exc
    if entry is not None:
        (<Entry>entry).stats.errors += 1
        who = f"plugin {(<Entry>entry).name!r} {(<Entry>entry).version}"
    else:
        who = _answered_by(ctx)
    status = _failure_status(exc)
    _log.error("%s raised in its body transform: %s: %s -- %s", who, type(exc).__name__,
               _printable(str(exc), 2048),
               f"the client got a {status}" if before_start else
               "the response was cut short (its start had gone out)", exc_info=exc)
    if before_start:
        await _send_response(send, _error_response(status), ctx)
        return
    raise RuntimeError(f"{who}: its body transform raised {type(exc).__name__}; the response was cut "
                       "short (see the covet_pipe.plugins log)") from None
