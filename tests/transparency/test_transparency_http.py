"""Issue 15, transparency: ten no-op plugins in front of a real Starlette app change nothing a client sees.

The sample app (:mod:`tests.transparency.apps`) is served by uvicorn on 127.0.0.1 four times: bare, and
behind ten no-op plugins of each style (``hook10``, ``call_next10``) and of both (``mixed5+5``, hook and
call_next interleaved, some hooks ``async``). Every request below goes to the bare app and to each chain;
status, headers (less ``date`` and ``server``) and body bytes must be identical, and every no-op must have
run for it (a comparison through layers that did not run would prove nothing).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from covet_pipe import wrap
from tests._helpers import WAIT
from tests._layers import NOOP_CHAINS, calls_of, manager_with, noop_chain
from tests._wire import SERVER_HEADERS
from tests.conftest import Served
from tests.transparency.apps import build_app


@dataclass
class Layered:
    """One server of the comparison: its uvicorn, the no-ops in front of the app, the app's record."""

    served: Served
    plugins: list
    record: list


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Layered]]:
    with contextlib.ExitStack() as stack:
        app, record = build_app()
        out = {"bare": Layered(stack.enter_context(Served(app)), [], record)}
        for kind in NOOP_CHAINS:
            app, record = build_app()
            plugins = noop_chain(kind)
            out[kind] = Layered(stack.enter_context(Served(wrap(app, manager_with(*plugins)))), plugins, record)
        yield out


JSON = {"content-type": "application/json"}

#: name -> (method, path, request headers, request body), the status the bare app answers
REQUESTS: dict[str, tuple[str, str, dict[str, str], bytes, int]] = {
    "home": ("GET", "/", {}, b"", 200),
    "head-home": ("HEAD", "/", {}, b"", 200),
    "path-param": ("GET", "/users/42?q=x", {}, b"", 200),
    "path-param-post-json": ("POST", "/users/7", JSON, b'{"a": [1, 2], "b": "\\u00e9"}', 201),
    "path-param-not-an-int": ("GET", "/users/abc", {}, b"", 404),
    "redirect-slashes": ("GET", "/users/42/", {}, b"", 307),
    "not-found": ("GET", "/nope", {}, b"", 404),
    "method-not-allowed": ("DELETE", "/users/1", {}, b"", 405),
    "template": ("GET", "/page/Alice", {}, b"", 200),
    "streaming": ("GET", "/stream", {}, b"", 200),
    "file": ("GET", "/file", {}, b"", 200),
    "file-head": ("HEAD", "/file", {}, b"", 200),
    "file-range": ("GET", "/file", {"range": "bytes=10-99"}, b"", 206),
    "file-range-suffix": ("GET", "/file", {"range": "bytes=-50"}, b"", 206),
    "file-range-unsatisfiable": ("GET", "/file", {"range": "bytes=999999-"}, b"", 416),
    "static": ("GET", "/static/style.css", {}, b"", 200),
    "static-head": ("HEAD", "/static/style.css", {}, b"", 200),
    "static-not-modified": ("GET", "/static/style.css", {"if-none-match": "<etag>"}, b"", 304),
    "static-missing": ("GET", "/static/missing.css", {}, b"", 404),
    "http-exception-handler": ("GET", "/teapot", {}, b"", 418),
    "custom-exception-handler": ("GET", "/conflict", {}, b"", 409),
    "unhandled-error-500": ("GET", "/crash", {}, b"", 500),
    "redirect-307": ("GET", "/redirect", {}, b"", 307),
    "redirect-302": ("GET", "/redirect-found", {}, b"", 302),
    "cookies": ("GET", "/cookies", {"cookie": "b=2; a=1"}, b"", 200),
    "no-content-204": ("GET", "/no-content", {}, b"", 204),
    "not-modified-304": ("GET", "/not-modified", {}, b"", 304),
}


def fetch(layered: Layered, spec: tuple[str, str, dict[str, str], bytes]) -> tuple[int, list, bytes]:
    """One request on a new connection: status, headers (the server's own left out), raw body bytes."""
    method, path, headers, body = spec
    headers = dict(headers, host="app.test")     # the same Host for every server: URLs the app builds match
    with httpx.Client(base_url=layered.served.url, timeout=WAIT, follow_redirects=False) as client:
        with client.stream(method, path, headers=headers, content=body or None) as r:
            raw = b"".join(r.iter_raw())
            return r.status_code, [(k, v) for k, v in r.headers.raw if k.lower().decode() not in SERVER_HEADERS], raw


def _ran(before: list, after: list) -> list[tuple[str, int]]:
    return [(name, a - b) for (name, b, _), (_, a, _) in zip(before, after)]


@pytest.mark.parametrize("kind", NOOP_CHAINS)
@pytest.mark.parametrize("name", list(REQUESTS))
def test_response_is_identical_behind_ten_noop_layers(servers, kind, name):
    layered = servers[kind]
    method, path, headers, body, status = REQUESTS[name]
    if headers.get("if-none-match") == "<etag>":      # the file's ETag (one file: the same on every server)
        etag = httpx.get(servers["bare"].served.url + path, timeout=WAIT).headers["etag"]
        headers = dict(headers, **{"if-none-match": etag})
    want = fetch(servers["bare"], (method, path, headers, body))
    before = calls_of(layered.plugins)
    got = fetch(layered, (method, path, headers, body))
    after = calls_of(layered.plugins)
    assert want[0] == status, "the bare app did not answer what this request is meant to exercise"
    assert got == want
    assert _ran(before, after) == [(p.name, 1) for p in layered.plugins], "a no-op layer did not run"
    assert [(n, r) for n, r, _ in after] == [(n, s) for n, _, s in after], "a response phase did not run"


def _background(layered: Layered, token: str) -> tuple[tuple[int, list, bytes], list]:
    start = len(layered.record)
    response = fetch(layered, ("GET", f"/background?n={token}", {}, b""))
    deadline = time.monotonic() + WAIT
    while len(layered.record) < start + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return response, layered.record[start:]


@pytest.mark.parametrize("kind", NOOP_CHAINS)
def test_background_tasks_run_the_same_behind_ten_noop_layers(servers, kind):
    token = kind.replace("+", "_")
    want = _background(servers["bare"], token)
    got = _background(servers[kind], token)
    assert got == want
    assert want[1] == [("sync-task", token), ("async-task", token)]


def ws_transcript(port: int) -> list[Any]:
    """A websocket session with the echo route: subprotocol, a header, text and bytes, the close."""
    with ws_connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["chat"], open_timeout=WAIT) as ws:
        out: list[Any] = [ws.subprotocol, ws.response.headers.get("x-ws")]
        ws.send("hi")
        out.append(ws.recv(timeout=WAIT))
        ws.send(b"\x01\x02\x03")
        out.append(ws.recv(timeout=WAIT))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=WAIT)
        out.append((ws.close_code, ws.close_reason))
    with pytest.raises(InvalidStatus) as denied:
        with ws_connect(f"ws://127.0.0.1:{port}/ws-deny", open_timeout=WAIT):
            pass
    out.append(denied.value.response.status_code)
    return out


@pytest.mark.parametrize("kind", NOOP_CHAINS)
def test_websocket_session_is_identical_behind_ten_noop_layers(servers, kind):
    layered = servers[kind]
    want = ws_transcript(servers["bare"].served.port)
    before = calls_of(layered.plugins)
    got = ws_transcript(layered.served.port)
    assert got == want
    assert want == ["chat", "1", "echo:hi", b"\x03\x02\x01", (4001, "bye"), 403]
    # the hook no-ops see websockets (both handshakes); the call_next ones wrap HTTP only
    assert _ran(before, calls_of(layered.plugins)) == [
        (p.name, 2 if "websocket" in p.protocols else 0) for p in layered.plugins]
