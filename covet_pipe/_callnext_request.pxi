# The call_next style, the request a plugin gets (included in _core.pyx after _callnext_response.pxi):
# its body read on demand, before call_next. What the plugin read is replayed to the app, message
# by message as it came (_AppReceive); what it did not read reaches the app from the server.


class RequestBody(bytes):
    """The request body once read: the bytes, and still callable (``await request.body()``)."""

    __slots__ = ()

    def __call__(self):
        return _ready(self)


@cython.final
cdef class _UnreadBody:
    """``request.body`` of a call_next plugin before the body was read: ``await request.body()``."""
    cdef CallNextRequest req

    def __call__(self):
        return _read_body_lazily(self.req)

    def __repr__(self):
        return "<request body not read yet: await request.body()>"


cdef class CallNextRequest(Request):
    """The request a call_next plugin gets: the chain's request as the plugins before it left it.

    Its body is read on demand, before ``call_next``: ``await request.body()`` (all of it) or
    ``async for chunk in request.stream()``. What was read is replayed to the app; what was not
    reaches the app from the server untouched.
    """
    cdef _Layer _layer

    @property
    def body(self):
        """Call it: ``await request.body()``. Once read (or with ``needs_body``) it is the bytes too."""
        cdef _UnreadBody unread
        body = self._body
        if body is None:
            unread = _UnreadBody.__new__(_UnreadBody)
            unread.req = self
            return unread
        if type(body) is not RequestBody:
            body = self._body = RequestBody(body)
        return body

    def stream(self):
        """The request body chunk by chunk (bytes), as the client sends it."""
        cdef _BodyStream s = _BodyStream.__new__(_BodyStream)
        s.req = self
        return s


@cython.final
cdef class _BodyStream:
    """request.stream(): first the chunks read so far, then the rest as it comes."""
    cdef CallNextRequest req
    cdef Py_ssize_t i

    def __aiter__(self):
        return self

    def __anext__(self):
        return _next_chunk(self)


cdef list _chunks_read(CallNextRequest req):
    # The chunks the plugin has; a body read before the layer (needs_body) counts as one.
    cdef _Layer layer = req._layer
    if layer.read_chunks is None:
        layer.read_chunks = []
        if req._body is not None:
            layer.read_chunks.append(bytes(req._body))
            layer.body_eof = True
    return layer.read_chunks


async def _next_chunk(_BodyStream s):
    cdef list chunks = _chunks_read(s.req)
    while True:
        if s.i < len(chunks):
            chunk = chunks[s.i]
            s.i += 1
            if chunk:
                return chunk
            continue
        if s.req._layer.body_eof:
            raise StopAsyncIteration
        await _read_more(s.req, "stream()")


async def _read_body_lazily(CallNextRequest req):
    cdef _Layer layer = req._layer
    cdef list chunks = _chunks_read(req)
    while not layer.body_eof:
        await _read_more(req, "body()")
    if req._body is None:
        req._body = RequestBody(b"".join(chunks))
        layer.outer._body = req._body       # the segments after this plugin need not read it again
    return req.body


async def _read_more(CallNextRequest req, str what):
    # One message of the request's from the server, kept for the app's replay.
    cdef _Layer layer = req._layer
    if req.scope.get("type") != "http":
        raise TypeError(f"plugin {layer.entry.name!r}: request.{what} in process_request: a "
                        f"{req.scope.get('type')} request has no body")
    if layer.cn is None or layer.cn._called:
        raise RuntimeError(f"plugin {layer.entry.name!r}: request.{what} in process_request after "
                           "call_next(): the app reads the rest of the body itself; read the body "
                           "before calling call_next")
    message = await layer.srv_receive()
    if layer.replay is None:
        layer.replay = []
    layer.replay.append(message)
    t = message.get("type")
    if t == "http.disconnect":
        raise ClientDisconnected(f"the client went away while plugin {layer.entry.name!r} read the "
                                 "request body")
    if t != "http.request":
        return
    chunk = message.get("body", b"")
    layer.body_size += len(chunk)
    if layer.body_size > MAX_BODY:
        raise _BodyTooLarge()
    layer.read_chunks.append(chunk)
    if not message.get("more_body", False):
        layer.body_eof = True
