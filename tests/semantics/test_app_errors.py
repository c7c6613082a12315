"""Issue 15, defect 2: an app that raises before its response gets the pipeline's own 500.

Before any ``http.response.start`` the pipeline still owns the response: it answers a 500 with no
traceback and runs the response phase over it (every layer's response hook, the code after each
``call_next``), as for a plugin's own short-circuit. After the start the status is on the wire: the
connection is cut and the client sees a truncated body, never a second head.
"""

from __future__ import annotations

import socket

import httpx
import pytest

from covet_pipe import wrap
from tests._helpers import WAIT
from tests._layers import NoopCallNext, StampCallNext, StampHook, calls_of, layered, manager_with, styles
from tests._wire import parse_head, read_until_closed, request

SECRET = "secret-detail-4242"


class AppError(Exception):
    pass


async def failing_app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/raise-before":
        await receive()
        raise AppError(f"the app broke: {SECRET}")
    if scope["path"] == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial,", "more_body": True})
        raise AppError(f"the app broke mid-stream: {SECRET}")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _no_traceback(body: bytes) -> None:
    text = body.decode("latin-1")
    assert "Traceback" not in text and SECRET not in text and "AppError" not in text, text[:300]


@pytest.mark.parametrize("style", styles())
def test_app_raising_before_its_response_gets_the_pipelines_500_with_the_response_phase_run(serve, style):
    """The innermost layer turns the app's exception into the pipeline's 500; every layer above sees that 500.

    A hook segment answers it and runs its response hooks over it. A call_next plugin right around the app
    gets the exception itself from ``call_next`` (so it can catch it, as with Starlette's call_next); when it
    lets it through, its layer answers the 500, and the code after its ``call_next`` does not run.
    """
    plugins = layered(style, StampHook, StampCallNext)
    with serve(wrap(failing_app, manager_with(*plugins))) as s:
        r = httpx.get(s.url + "/raise-before", timeout=WAIT)
        after = httpx.get(s.url + "/ok", timeout=WAIT)      # a new connection: the first may be closed
    assert r.status_code == 500
    _no_traceback(r.content)
    assert r.headers["content-length"] == str(len(r.content))
    innermost = plugins[-1]
    saw_exception = innermost.name if isinstance(innermost, (StampCallNext, NoopCallNext)) else None
    # the actor ("stamp") writes x-stamp from the status it saw, unless the exception went through it
    assert (r.headers.get("x-stamp") == "500") is (saw_exception != "stamp"), r.headers
    # every layer's response phase ran over the 500, but the call_next plugin that got the exception
    assert calls_of(plugins) == [(p.name, 2, 1 if p.name == saw_exception else 2) for p in plugins]
    assert (after.status_code, after.text, after.headers["x-stamp"]) == (200, "ok", "200")


@pytest.mark.parametrize("style", styles())
def test_app_raising_after_its_start_cuts_the_connection_after_the_partial_body(serve, style):
    plugins = layered(style, StampHook, StampCallNext)
    with serve(wrap(failing_app, manager_with(*plugins))) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(request("GET", "/raise-after"))
            data, closed = read_until_closed(sock)
    head, rest = parse_head(data)
    assert closed, "the server kept a connection whose response cannot be finished"
    assert head.status == 200
    assert head.get("x-stamp") == "200"              # the response phase ran at the start
    assert head.get("transfer-encoding") == "chunked"
    assert rest.startswith(b"8\r\npartial,\r\n")
    assert not rest.endswith(b"0\r\n\r\n"), "the truncated body was framed as complete"
    assert b"HTTP/1.1" not in rest, "a second head followed the partial body"
    _no_traceback(rest)
