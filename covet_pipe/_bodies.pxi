# Response bodies as streams: the body of a Response a plugin made from an (async) iterator,
# sent chunk by chunk. Included by _core.pyx before _sending.pxi.

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


async def _send_stream(send, stream, RequestContext ctx, str kind):
    """Send a streamed body chunk by chunk, each send awaited (the server's flow control).

    Where a send to a client that hung up does nothing (ASGI before 2.4, as under uvicorn), the
    request's receive (ctx._receive, when there is one) is watched meanwhile, as Starlette's
    StreamingResponse does: once the client is gone, the stream is closed instead of read to its end.
    """
    gone = None
    if ctx._receive is not None and not _send_raises_when_gone(ctx.request.scope):
        gone = _asyncio.ensure_future(_until_disconnect(ctx._receive))
    try:
        if hasattr(stream, "__aiter__"):
            async for chunk in stream:
                if gone is not None and gone.done():
                    return
                chunk = _chunk_of(chunk, ctx)
                if chunk:
                    await send({"type": kind, "body": chunk, "more_body": True})
        elif isinstance(stream, (list, tuple)):
            for chunk in stream:        # in memory already: nothing to wait for
                if gone is not None and gone.done():
                    return
                chunk = _chunk_of(chunk, ctx)
                if chunk:
                    await send({"type": kind, "body": chunk, "more_body": True})
        else:
            # A sync iterator may block (a file, a socket): each next() runs in a worker
            # thread, as Starlette's StreamingResponse does, so the event loop goes on.
            it = iter(stream)
            loop = _asyncio.get_running_loop()
            while True:
                chunk = await loop.run_in_executor(None, next, it, _END)
                if chunk is _END or (gone is not None and gone.done()):
                    break
                chunk = _chunk_of(chunk, ctx)
                if chunk:
                    await send({"type": kind, "body": chunk, "more_body": True})
            if chunk is not _END:
                return
        await send({"type": kind, "body": b"", "more_body": False})
    finally:
        if gone is not None:
            gone.cancel()
        await _close_stream(stream)
