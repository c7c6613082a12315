"""The hook style's response path through a real uvicorn: statuses with no content, an app that
raises before its response, and a response that can no longer change once it has started.

The wire is read from a raw socket on a keep-alive connection: a body where RFC 9110 allows none
would be read as the start of the next response, so each test sends a second request on the same
connection and checks that its answer is the next thing on the wire.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, Response, wrap
from tests._helpers import WAIT


class Wire:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, framing responses as a client must."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"the server closed the connection; unread: {self.buf!r}")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def request(self, method: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        """Send one request and read its response: (status, headers by lower-case name, body)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n"
        for k, v in (headers or {}).items():
            head += f"{k}: {v}\r\n"
        self.sock.sendall(head.encode() + b"\r\n")
        status_line = self._line()
        assert status_line.startswith(b"HTTP/1.1 "), (
            f"the response does not start where the previous one ended: {status_line!r}")
        status = int(status_line.split()[1])
        fields: dict[str, list[str]] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            fields.setdefault(name.strip().lower(), []).append(value.strip())
        # RFC 9112 §6.3: the length of the body as a client works it out
        if method == "HEAD" or status < 200 or status in (204, 304):
            return status, fields, b""
        if "chunked" in ",".join(fields.get("transfer-encoding", [])):
            body = b""
            while size := int(self._line().split(b";")[0], 16):
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            while self._line():     # trailers
                pass
            return status, fields, body
        return status, fields, self._take(int(fields.get("content-length", ["0"])[0]))


@pytest.fixture
def wire():
    opened: list[Wire] = []

    def _open(served) -> Wire:
        w = Wire(served.port)
        opened.append(w)
        return w

    yield _open
    for w in opened:
        w.close()


class AppProbe:
    """An app that answers 200 "hello" (with a length, or chunked) and records how its sends went."""

    def __init__(self) -> None:
        self.sends_returned: list[str] = []
        self.finished = threading.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            if scope["path"] == "/chunked":
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain")]})
                for piece in (b"hel", b"lo"):
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    self.sends_returned.append(piece.decode())
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5"),
                                        (b"x-app", b"1")]})
                await send({"type": "http.response.body", "body": b"hello"})
            self.sends_returned.append("end")
        finally:
            self.finished.set()


class SetStatus(MiddlewarePlugin):
    """Sets the status a request asks for (x-want-status) in its response hook."""

    name = "set_status"
    version = "1.0.0"

    def process_response(self, response, ctx):
        want = ctx.request.headers.get("x-want-status")
        if want:
            response.status = int(want)
        response.headers.add("x-hook", "1")


class AsyncSetStatus(SetStatus):
    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        SetStatus.process_response(self, response, ctx)


class Answers(MiddlewarePlugin):
    """Answers /answer/<status> itself with a body, unless the path says otherwise."""

    name = "answers"
    version = "1.0.0"
    priority = 2000

    def process_request(self, request, ctx):
        if request.path.startswith("/answer/"):
            status = int(request.path.rsplit("/", 1)[1])
            return MiddlewareAction.respond(Response(status, {"transfer-encoding": "chunked"}, body="hello"))


def served_app(serve, *plugins, app=None):
    manager = PluginManager()
    for p in plugins:
        manager.register(p)
    return serve(wrap(app or AppProbe(), manager))


@pytest.mark.parametrize("hook", [SetStatus, AsyncSetStatus], ids=["sync", "async"])
@pytest.mark.parametrize("path", ["/", "/chunked"], ids=["content-length", "chunked"])
@pytest.mark.parametrize("status", [204, 304])
def test_a_hook_that_sets_a_status_without_content_drops_the_apps_body_and_length(serve, wire, hook, path,
                                                                                   status):
    app = AppProbe()
    with served_app(serve, hook(), app=app) as s:
        w = wire(s)
        got_status, fields, body = w.request("GET", path, {"x-want-status": str(status)})
        assert got_status == status
        assert "content-length" not in fields and "transfer-encoding" not in fields
        assert fields["x-hook"] == ["1"]              # the hook's other edits still reach the client
        # the connection is in sync: the next response is the next thing on the wire
        status2, _, body2 = w.request("GET", "/")
        assert (status2, body2) == (200, b"hello")
        assert app.finished.wait(WAIT)
    assert app.sends_returned.count("end") == 2       # the app's sends returned and it ran to its end
    if path == "/chunked":
        assert app.sends_returned[:2] == ["hel", "lo"]


@pytest.mark.parametrize("hook", [SetStatus, AsyncSetStatus], ids=["sync", "async"])
def test_head_keeps_the_apps_length_and_sends_no_body(serve, wire, hook):
    with served_app(serve, hook()) as s:
        w = wire(s)
        status, fields, _ = w.request("HEAD", "/")
        assert status == 200
        assert fields["content-length"] == ["5"]       # RFC 9110 §9.3.2: the length a GET would have
        assert fields["x-hook"] == ["1"]
        status, fields, _ = w.request("HEAD", "/", {"x-want-status": "204"})
        assert status == 204 and "content-length" not in fields
        assert w.request("GET", "/")[::2] == (200, b"hello")


@pytest.mark.parametrize("status", [204, 304])
def test_a_plugins_own_answer_with_a_status_without_content_sends_no_body(serve, wire, status):
    with served_app(serve, Answers()) as s:
        w = wire(s)
        got, fields, _ = w.request("GET", f"/answer/{status}")
        assert got == status
        assert "content-length" not in fields and "transfer-encoding" not in fields
        assert w.request("GET", "/")[::2] == (200, b"hello")
        # the response hook of an outer plugin turning the plugin's 200 into a 204
        got, fields, _ = w.request("GET", "/answer/200", {"x-want-status": "204"})
        assert got == 200 and fields["content-length"] == ["5"]     # no response hook here


def test_a_response_hook_that_turns_a_plugins_answer_into_204_drops_its_body(serve, wire):
    with served_app(serve, Answers(), SetStatus()) as s:
        w = wire(s)
        got, fields, _ = w.request("GET", "/answer/200", {"x-want-status": "204"})
        assert got == 204
        assert "content-length" not in fields and "transfer-encoding" not in fields
        assert fields["x-hook"] == ["1"]
        assert w.request("GET", "/")[::2] == (200, b"hello")


# -- an app that raises before its response ----------------------------------------------------

class AppError(Exception):
    pass


class RequestOnly(MiddlewarePlugin):
    """A request hook and no response hook."""

    name = "request_only"
    version = "1.0.0"

    def process_request(self, request, ctx):
        request.headers.set("x-seen", "1")


class AsyncRequest(SetStatus):
    name = "async_request"

    async def process_request(self, request, ctx):
        await asyncio.sleep(0)


class ReadsBody(SetStatus):
    name = "reads_body"
    needs_body = True


class Wraps(MiddlewarePlugin):
    name = "wraps"
    version = "1.0.0"
    priority = 5000

    async def process_request(self, request, call_next):
        return await call_next(request)


#: chains in front of the failing app: (plugins, whether a response hook runs over the 500)
FAILING_CHAINS = {
    "sync-hooks": (lambda: [SetStatus()], True),                  # the simple path (_run_simple)
    "request-hook-only": (lambda: [RequestOnly()], False),
    "async-hook": (lambda: [AsyncRequest()], True),               # the _run coroutine
    "needs-body": (lambda: [ReadsBody()], True),
    "hook+call_next": (lambda: [SetStatus(), Wraps()], True),     # the outer hook segment answers
    "call_next": (lambda: [Wraps()], False),
}


def failing_app(when: str):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if when == "after-start":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise AppError("cannot reach the database\r\nERROR forged line")

    if when == "sync":
        def sync_app(scope, receive, send):      # app() itself raises, before any coroutine exists
            raise AppError("cannot reach the database\r\nERROR forged line")
        return sync_app
    return app


def through_server(pipeline, reached: list):
    async def server_side(scope, receive, send):   # what uvicorn gets back from the pipeline
        try:
            await pipeline(scope, receive, send)
        except BaseException as exc:
            reached.append(exc)
            raise
    return server_side


@pytest.mark.parametrize("chain", list(FAILING_CHAINS))
@pytest.mark.parametrize("when", ["in-coroutine", "sync"])
def test_an_app_that_raises_before_its_response_gets_the_pipelines_500_and_the_response_hooks(
        serve, wire, caplog, chain, when):
    make, hooked = FAILING_CHAINS[chain]
    manager = PluginManager()
    for p in make():
        manager.register(p)
    reached: list = []
    caplog.set_level("ERROR", logger="covet_pipe.app")
    with serve(through_server(wrap(failing_app(when), manager), reached)) as s:
        w = wire(s)
        status, fields, body = w.request("GET", "/x")
        assert status == 500
        assert body == b'{"error":"Internal Server Error"}'      # no traceback, no exception text
        assert ("x-hook" in fields) == hooked                    # the response hooks ran over the 500
        assert "close" not in fields.get("connection", [])
        if hooked:
            assert w.request("GET", "/x", {"x-want-status": "503"})[0] == 503   # and may change it
        assert w.request("GET", "/x")[0] == 500                  # the connection stays usable
    assert reached == []                                         # the server never saw the exception
    logged = [r for r in caplog.records if r.name == "covet_pipe.app"]
    assert len(logged) == (3 if hooked else 2)                   # once per request
    record = logged[0]
    assert record.exc_info and record.exc_info[0] is AppError
    message = record.getMessage()
    assert "AppError" in message and "GET /x" in message and "500" in message
    assert "\n" not in message and "\r" not in message           # the app's text is escaped


@pytest.mark.parametrize("chain", list(FAILING_CHAINS))
def test_an_app_that_raises_after_its_response_started_reaches_the_server(serve, caplog, chain):
    make, _ = FAILING_CHAINS[chain]
    manager = PluginManager()
    for p in make():
        manager.register(p)
    reached: list = []
    with serve(through_server(wrap(failing_app("after-start"), manager), reached)) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):     # the server closes the connection mid-response
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and b"part" in data and not data.endswith(b"0\r\n\r\n")
    assert [type(e) for e in reached] == [AppError]
    assert not [r for r in caplog.records if r.name == "covet_pipe.app"]


# -- what went on can no longer change ------------------------------------------------------------

class Keeps(MiddlewarePlugin):
    """Keeps the response (and request) its hooks got, for edits after they went on."""

    version = "1.0.0"

    def __init__(self, name: str = "keeps", *, respond: bool = False, touch: bool = True) -> None:
        self.name = name
        self.respond = respond
        self.touch = touch
        self.kept: list = []

    def process_request(self, request, ctx):
        self.kept.append(request)
        if self.respond:
            response = Response(200, {"x-own": "1"}, body="mine")
            self.kept.append(response)
            return MiddlewareAction.respond(response)

    def process_response(self, response, ctx):
        if self.touch:
            response.headers.add("x-kept", self.name)
        self.kept.append(response)


class RequestHookOnly(Keeps):
    process_response = None    # type: ignore[assignment]


EDITS = {
    "headers.add": lambda r: r.headers.add("x-late", "1"),
    "headers.set": lambda r: r.headers.set("x-kept", "late"),
    "headers.remove": lambda r: r.headers.remove("x-kept"),
    "del headers[...]": lambda r: r.headers.__delitem__("content-type"),
    "headers = ...": lambda r: setattr(r, "headers", {"x-late": "1"}),
    "status": lambda r: setattr(r, "status", 503),
}


def late_edit_app(plugins: list, edit, errors: list):
    """Sends the start, then tries *edit* on what each plugin kept, then ends the body."""
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"x-kept", b"app")]})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        for p in plugins:
            try:
                edit(p.kept[-1])
            except Exception as exc:        # noqa: BLE001 - recorded for the test to look at
                errors.append(exc)
        await send({"type": "http.response.body", "body": b"two"})
    return app


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
@pytest.mark.parametrize("touch", [True, False], ids=["headers-read-in-hook", "headers-untouched"])
def test_editing_a_response_after_its_start_went_out_raises_naming_the_plugin_and_hook(serve, wire, edit,
                                                                                       touch):
    from covet_pipe import ResponseStartedError

    plugin = Keeps(touch=touch)
    errors: list = []
    with served_app(serve, plugin, app=late_edit_app([plugin], EDITS[edit], errors)) as s:
        status, fields, body = wire(s).request("GET", "/")
    assert (status, body) == (200, b"one,two")
    assert "x-late" not in fields and fields["x-kept"] == (["app", "keeps"] if touch else ["app"])
    (exc,) = errors
    assert isinstance(exc, ResponseStartedError) and isinstance(exc, RuntimeError)
    assert (exc.plugin_name, exc.hook) == ("keeps", "process_response")
    what = "status" if edit == "status" else "headers"
    assert str(exc) == (f"plugin 'keeps' process_response: the response has already started; its {what} "
                        "can no longer change \u2014 edit them in process_response before returning")


def test_several_plugins_that_got_the_response_are_all_named(serve, wire):
    from covet_pipe import ResponseStartedError

    first, second = Keeps("first"), Keeps("second")
    errors: list = []
    with served_app(serve, first, second, app=late_edit_app([first], EDITS["headers.add"], errors)) as s:
        assert wire(s).request("GET", "/")[0] == 200
    (exc,) = errors
    assert isinstance(exc, ResponseStartedError) and exc.plugin_name is None
    assert str(exc).startswith("one of plugins 'first', 'second' (process_response): the response has "
                               "already started")


def test_a_plugins_own_answer_cannot_change_once_sent(serve, wire):
    from covet_pipe import ResponseStartedError

    plugin = RequestHookOnly("answers_itself", respond=True)
    with served_app(serve, plugin) as s:
        status, fields, body = wire(s).request("GET", "/")
        assert (status, fields["x-own"], body) == (200, ["1"], b"mine")
        with pytest.raises(ResponseStartedError, match=r"^plugin 'answers_itself' process_request: the "
                                                       r"response has already started; its headers"):
            plugin.kept[-1].headers.add("x-late", "1")
        with pytest.raises(ResponseStartedError, match="its status can no longer change"):
            plugin.kept[-1].status = 500


REQUEST_EDITS = {
    "headers": lambda q: q.headers.set("x-late", "1"),
    "method": lambda q: setattr(q, "method", "POST"),
    "path": lambda q: setattr(q, "path", "/elsewhere"),
    "query_string": lambda q: setattr(q, "query_string", b"a=1"),
}


@pytest.mark.parametrize("edit", list(REQUEST_EDITS), ids=list(REQUEST_EDITS))
@pytest.mark.parametrize("plugin", [Keeps, RequestHookOnly], ids=["with-response-hook", "request-hook-only"])
def test_editing_the_request_after_the_app_got_it_raises(serve, wire, edit, plugin):
    from covet_pipe import ResponseStartedError

    p = plugin("keeps")
    errors: list = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        try:
            REQUEST_EDITS[edit](p.kept[0])
        except Exception as exc:        # noqa: BLE001
            errors.append(exc)
        await AppProbe()(scope, receive, send)

    with served_app(serve, p, app=app) as s:
        assert wire(s).request("GET", "/")[::2] == (200, b"hello")
    (exc,) = errors
    assert isinstance(exc, ResponseStartedError)
    hook = "process_response" if plugin is Keeps else "process_request"
    assert str(exc) == (f"plugin 'keeps' {hook}: the request has already gone to the app; its headers, method, "
                        "path and query string can no longer change \u2014 edit them in process_request")
