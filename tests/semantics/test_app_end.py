"""Issue 15, defects 5 and 6: the app's coroutine always ends inside the loop, before the layer returns.

- a call_next plugin that discards call_next's response (returns its own): the app is not thrown a
  ``GeneratorExit``; its sends become no-ops, its ``receive`` reports ``http.disconnect``, and it is
  awaited (or cancelled) before the layer returns, with or without another call_next layer inside;
- the server's ``send`` raises: the app is closed inside the loop, before the exception leaves the pipeline;
- a client that hung up does not earn a "returned without sending a response" warning.

The app's ``finally`` reports where it ran (:class:`tests._wire.AppEnd`); a wrapper between uvicorn and the
pipeline reports when the pipeline returned. Each test reads the chain's in-flight count, then collects
garbage before it asserts, so a coroutine that was abandoned has its finaliser run (outside the loop:
``in_loop`` False) inside the test, and the server's shutdown does not wait out the drain for it.
"""

from __future__ import annotations

import asyncio
import gc
import socket

import httpx
import pytest

from covet_pipe import _core

from covet_pipe import MiddlewarePlugin, Response, wrap
from tests._helpers import WAIT
from tests._layers import ACTOR_PRIORITY, NoopCallNext, NoopHook, layered, manager_with, styles
from tests._wire import AppEnd, LogCatcher, request

NO_RESPONSE_WARNING = "returned without sending a response"


class Discard(MiddlewarePlugin):
    """Runs the app, then answers with its own response instead of call_next's."""

    name = "discard"
    version = "1.0.0"
    priority = ACTOR_PRIORITY

    async def process_request(self, request, call_next):
        await call_next(request)
        return Response(200, body=b"replaced")


def observed(app, end: AppEnd, *, failing_send: bool = False):
    """What uvicorn runs: *app*, recording in *end* when it returned or raised.

    With *failing_send*, the server's ``send`` raises OSError on the first body message (a server whose
    client went away); the wrapper records it and returns, as a server does.
    """
    async def server_side(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def server_send(message):
            if failing_send and message["type"] == "http.response.body":
                raise OSError("the client went away")
            await send(message)

        try:
            await app(scope, receive, server_send)
            end.mark("pipeline-returned")
        except BaseException as exc:
            end.mark(f"pipeline-raised:{type(exc).__name__}")
            if not isinstance(exc, OSError):
                raise
        finally:
            end.layer_done.set()
    return server_side


def streaming_app(end: AppEnd, *, block: bool = False):
    """Start, a chunk, then (block) wait forever or (else) a receive and the last chunk."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        end.mark("app-start")
        try:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            end.mark("start-sent")
            await send({"type": "http.response.body", "body": b"first,", "more_body": True})
            end.mark("chunk-sent")
            if block:
                await asyncio.Event().wait()
            message = await receive()
            end.mark(f"receive:{message['type']}")
            await send({"type": "http.response.body", "body": b"last"})
            end.mark("body-sent")
        except BaseException as exc:
            end.mark(f"raised:{type(exc).__name__}")
            raise
        finally:
            end.ended()
    return app


def _settle(end: AppEnd, manager) -> int:
    """Once the layer returned: the chain's in-flight count, then a garbage collection.

    The count is read first: a request whose coroutine was abandoned still counts as in flight (and holds
    the shutdown's drain) until the collector finalises it, which the collection then does, inside the
    test, before the server stops.
    """
    assert end.layer_done.wait(WAIT), f"the pipeline did not return: {end.events}"
    inflight = manager.chain.current.inflight
    gc.collect()
    return inflight


def _ended_inside_the_loop_before_the_layer_returned(end: AppEnd, returned: str, inflight: int) -> None:
    assert end.done.is_set(), f"the app's finally never ran: {end.events}"
    assert end.in_loop is True, f"the app's finally ran outside the event loop (garbage collected): {end.events}"
    assert "raised:GeneratorExit" not in end.events, f"GeneratorExit was thrown into the app: {end.events}"
    assert returned in end.events, end.events
    assert end.events.index("app-finally") < end.events.index(returned), \
        f"the layer returned before the app ended: {end.events}"
    assert inflight == 0, "the request still counted as in flight after the pipeline returned"


DISCARD_CHAINS = {
    "call_next": lambda: [Discard()],
    "call_next-in-hook": lambda: layered("call_next-in-hook", None, Discard),
    "call_next-over-call_next": lambda: [Discard(), NoopCallNext("inner_call_next", 900)],
}


@pytest.mark.parametrize("chain", [
    pytest.param("call_next"),
    pytest.param("call_next-in-hook"),
    pytest.param("call_next-over-call_next"),
])
def test_discarded_response_lets_the_app_finish_inside_the_loop_before_the_layer_returns(serve, chain):
    end = AppEnd()
    manager = manager_with(*DISCARD_CHAINS[chain]())
    with serve(observed(wrap(streaming_app(end), manager), end)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        inflight = _settle(end, manager)
    assert (r.status_code, r.content) == (200, b"replaced")
    _ended_inside_the_loop_before_the_layer_returned(end, "pipeline-returned", inflight)
    # the app ran on: its sends were no-ops, and its receive said the client is gone
    receives = [e for e in end.events if e.startswith("receive:")]
    assert receives in ([], ["receive:http.disconnect"]), end.events


@pytest.mark.parametrize("chain", [
    pytest.param("call_next"),
    pytest.param("call_next-over-call_next"),
])
def test_discarded_response_of_an_app_that_never_finishes_cancels_it_before_the_layer_returns(serve, chain,
                                                                                           monkeypatch):
    # the grace an app gets after its response was discarded (5 s by default), short for the test
    monkeypatch.setattr(_core, "DISCARD_GRACE", 0.5)
    end = AppEnd()
    manager = manager_with(*DISCARD_CHAINS[chain]())
    with serve(observed(wrap(streaming_app(end, block=True), manager), end)) as s:
        r = httpx.get(s.url + "/", timeout=WAIT)
        inflight = _settle(end, manager)
    assert (r.status_code, r.content) == (200, b"replaced")
    _ended_inside_the_loop_before_the_layer_returned(end, "pipeline-returned", inflight)
    assert "raised:CancelledError" in end.events, end.events




@pytest.mark.parametrize("style", styles())
def test_server_send_raising_ends_the_app_inside_the_loop_before_the_pipeline_raises(serve, style):
    end = AppEnd()
    plugins = layered(style, lambda: NoopHook("actor", ACTOR_PRIORITY), lambda: NoopCallNext("actor", ACTOR_PRIORITY))
    manager = manager_with(*plugins)
    with serve(observed(wrap(streaming_app(end), manager), end, failing_send=True)) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(request("GET", "/", close=True))
            inflight = _settle(end, manager)
    # the server's error leaves the pipeline (the server must know), after the app ended
    _ended_inside_the_loop_before_the_layer_returned(end, "pipeline-raised:OSError", inflight)


def _hang_up_app(end: AppEnd, *, wait_for_disconnect: bool):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            await receive()                      # the (empty) request body
            if wait_for_disconnect:
                end.mark(f"receive:{(await receive())['type']}")
        finally:
            end.ended()                          # returns without a response
    return app


CALL_NEXT_STYLES = ("call_next", "call_next-in-hook")


@pytest.mark.parametrize("style", styles(only=CALL_NEXT_STYLES))
def test_no_response_warning_when_the_client_had_hung_up(serve, style):
    end = AppEnd()
    app = observed(wrap(_hang_up_app(end, wait_for_disconnect=True),
                        manager_with(*layered(style, None, lambda: NoopCallNext("actor", ACTOR_PRIORITY)))), end)
    with LogCatcher("covet_pipe.plugins") as log:
        with serve(app) as s:
            with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
                sock.sendall(request("GET", "/"))
                sock.shutdown(socket.SHUT_WR)
            assert end.layer_done.wait(WAIT)
    assert "receive:http.disconnect" in end.events
    assert not [m for m in log.messages() if NO_RESPONSE_WARNING in m], log.messages()


@pytest.mark.parametrize("style", styles(only=CALL_NEXT_STYLES))
def test_no_response_warning_when_the_client_is_still_there(serve, style):
    """The warning stays for an app that returns without a response to a client still waiting."""
    end = AppEnd()
    app = observed(wrap(_hang_up_app(end, wait_for_disconnect=False),
                        manager_with(*layered(style, None, lambda: NoopCallNext("actor", ACTOR_PRIORITY)))), end)
    with LogCatcher("covet_pipe.plugins") as log:
        with serve(app) as s:
            r = httpx.get(s.url + "/", timeout=WAIT)
            assert end.layer_done.wait(WAIT)
    assert r.status_code == 500
    assert [m for m in log.messages() if NO_RESPONSE_WARNING in m], log.messages()
