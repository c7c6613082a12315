# The call_next style (included in _core.pyx): the downstream app runs in the plugin's own task.
#
# ``call_next`` drives the downstream coroutine itself, passing what it waits on
# through to the event loop. The app's ``send`` hands the message straight back
# to the driver, so the response start returns from ``call_next`` and the body
# is pulled from the same coroutine afterwards: no child task, no in-memory
# stream, contextvars shared, background tasks run after the body, streams stay
# streams. Sends from another task (a response that streams from a task group)
# take a queue of one, which keeps their order and backpressure.

from collections import deque as _deque
import asyncio as _asyncio


class _Msg:
    """Yielded by the capturing send to the driver (never reaches the event loop)."""

    __slots__ = ("message",)

    def __init__(self, message):
        self.message = message


class _Pass:
    """Yield one value to whoever drives us (the event loop) and return what it sends back."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return (yield self.value)


class _Handoff:
    __slots__ = ("bridge", "message")

    def __init__(self, bridge, message):
        self.bridge = bridge
        self.message = message

    def __await__(self):
        if self.bridge.driving:
            # Called inside the driver's coro.send(): go straight to it.
            yield _Msg(self.message)
            return None
        return (yield from self.bridge.post(self.message).__await__())


class _Bridge:
    """Drives the downstream app and hands its messages to call_next and the body pump."""

    def __init__(self, downstream, receive):
        self.downstream = downstream
        self.receive = receive
        self.coro = None
        self.driving = False
        self.done = False
        self.to_send = None
        self.to_throw = None
        self.pending = _deque()
        self.waker = None
        #: a future the app still waits on after a send from another task woke us
        self.parked = None
        #: what the downstream app raised: it passes through call_next unchanged
        self.error = None

    def send(self, message):
        return _Handoff(self, message)

    async def post(self, message):
        """A send from another task: queue it and wait until the driver took it."""
        fut = _asyncio.get_running_loop().create_future()
        self.pending.append((message, fut))
        if self.waker is not None and not self.waker.done():
            self.waker.set_result(None)
        await fut

    def start(self, scope):
        self.coro = self.downstream(scope, self.receive, self.send)
        if not hasattr(self.coro, "send"):   # an awaitable that is not a coroutine
            self.coro = self.coro.__await__()

    async def next_message(self):
        """Drive the app until it sends a message; None once it has finished."""
        while True:
            if self.pending:
                message, fut = self.pending.popleft()
                if not fut.done():
                    fut.set_result(None)
                return message
            if self.done:
                return None
            if self.parked is not None:
                parked, self.parked = self.parked, None
                await self._wait(parked)
                continue
            self.driving = True
            try:
                if self.to_throw is not None:
                    exc, self.to_throw = self.to_throw, None
                    yielded = self.coro.throw(exc)
                else:
                    value, self.to_send = self.to_send, None
                    yielded = self.coro.send(value)
            except StopIteration:
                self.done = True
                continue
            except BaseException as exc:
                self.done = True
                self.error = exc
                raise
            finally:
                self.driving = False
            if type(yielded) is _Msg:
                return yielded.message
            await self._wait(yielded)

    async def _wait(self, yielded):
        """The app waits on *yielded*: wait for it, or for a send from another task."""
        if not hasattr(yielded, "add_done_callback"):
            try:
                self.to_send = await _Pass(yielded)   # a bare yield: hand it to the loop
            except BaseException as exc:
                self.to_throw = exc
            return
        yielded._asyncio_future_blocking = False
        waker = self.waker = _asyncio.get_running_loop().create_future()

        def wake(_):
            if not waker.done():
                waker.set_result(None)

        yielded.add_done_callback(wake)
        try:
            await waker
        except BaseException as exc:
            # We were cancelled: cancel what the app waits on, and let it see why.
            yielded.cancel()
            self.to_throw = exc
        finally:
            yielded.remove_done_callback(wake)
            self.waker = None
        if not yielded.done() and self.to_throw is None:
            # Woken by a send from another task: the app itself is still waiting.
            self.parked = yielded

    def close(self):
        if self.coro is not None and not self.done:
            self.done = True
            try:
                self.coro.close()
            except RuntimeError:
                pass  # the app swallowed GeneratorExit; nothing more to do for it


class StreamedResponse(Response):
    """What ``call_next`` returns: the app's status and headers; the body streams later.

    Edit ``status`` and ``headers`` and return it. Reading ``body_iterator`` consumes
    the body: then return a new Response built from what you read.
    """

    def __init__(self, status, headers, bridge):
        super().__init__(status, headers, None)
        self.body = None
        self._bridge = bridge
        self._first = None
        self._consumed = False

    @property
    def body_iterator(self):
        return self._iterate()

    async def _iterate(self):
        self._consumed = True
        while True:
            message = await self._bridge.next_message()
            if message is None:
                return
            if message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return


async def _run_call_next(entry, downstream, req, scope,
                        receive, send):
    """Run one call_next-style plugin around *downstream* and send what it returns."""
    bridge = _Bridge(downstream, receive)
    made = []

    async def call_next(request=None):
        if made:
            raise RuntimeError(f"plugin {entry.name!r} called call_next() twice; call it once per request")
        bridge.start((request or req).build_scope())
        message = await bridge.next_message()
        if message is None or message["type"] != "http.response.start":
            if message is None:
                _log.warning("plugin %r: the app returned without sending a response", entry.name)
            streamed = StreamedResponse(500, None, bridge)
            streamed._first = message
        else:
            streamed = StreamedResponse(message.get("status", 200), message.get("headers") or [], bridge)
        made.append(streamed)
        return streamed

    entry.stats.calls += 1
    try:
        assert entry.req_hook is not None   # a call_next entry is built from its process_request
        response = await entry.req_hook(req, call_next)
        if not isinstance(response, Response):
            raise TypeError(f"process_request of call_next plugin {entry.name!r} returned "
                            f"{type(response).__name__}; it must return the Response from call_next "
                            "or one it made")
    except Exception as exc:
        if exc is bridge.error:
            # The app raised and the plugin let it through: the app's exception, not the
            # plugin's failure. It reaches the server unchanged (and the app is not run again).
            raise
        entry.stats.errors += 1
        started = bool(made)
        _log.error("plugin %r %s raised in process_request (call_next style): %s: %s -- %s", entry.name,
                  entry.version, type(exc).__name__, _printable(str(exc), 2048),
                  "skipped (failure_policy='open')" if entry.fail_open and not started
                  else "the client got a 500", exc_info=exc)
        bridge.close()
        if entry.fail_open and not started:
            entry.stats.skipped_open += 1
            await downstream(req.build_scope(), receive, send)
            return
        await _send_plain(send, _error_response(500))
        return
    if made and response is made[0] and not response._consumed:
        await _stream(response, send)
        return
    bridge.close()
    if made and response is made[0]:
        raise RuntimeError(f"plugin {entry.name!r} read the body of call_next's response and returned it; "
                           "return a new Response with the body you read")
    entry.stats.short_circuits += 1
    await _send_plain(send, response)


async def _send_plain(send, response):
    await send({"type": "http.response.start", "status": response.status,
                "headers": _plain_headers(response)})
    await send({"type": "http.response.body", "body": response.body or b"", "more_body": False})


def _plain_headers(response):
    raw = [(k, v) for k, v in response.headers.raw if k.lower() != b"content-length"]
    if response.media_type and not any(k.lower() == b"content-type" for k, _ in raw):
        raw.append((b"content-type", response.media_type.encode("latin-1")))
    body = response.body or b""
    if response.status >= 200 and response.status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode()))
    return raw


async def _stream(response, send):
    bridge = response._bridge
    if response._first is None and response.status == 500 and bridge.done:
        await _send_plain(send, _error_response(500))
        return
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers.raw})
    if response._first is not None:
        await send(response._first)
    while True:
        message = await bridge.next_message()
        if message is None:
            return
        await send(message)

