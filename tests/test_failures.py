"""A failing plugin never takes the server down, never leaks a traceback, and is counted and logged."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from covet_pipe import MiddlewarePlugin, PluginManager, wrap
from tests._helpers import asgi_call

SECRET = "db-password-hunter2"


class Boom(Exception):
    pass


class Tracer(MiddlewarePlugin):
    """Logs both hooks and marks the response, so the onion is visible in the answer."""

    version = "1.0.0"

    def __init__(self, name: str, log: list, priority: int) -> None:
        self.name = name
        self.log = log
        self.priority = priority

    def process_request(self, request, ctx):
        self.log.append(f"{self.name}.req")

    def process_response(self, response, ctx):
        self.log.append(f"{self.name}.resp")
        response.headers.add("x-trace", self.name)


class SyncExploder(MiddlewarePlugin):
    """Raises in the hook named by *phase*; logs the hooks it got through."""

    name = "exploder"
    version = "2.0.0"
    priority = 20

    def __init__(self, log: list, phase: str, policy: str) -> None:
        self.log = log
        self.phase = phase
        self.failure_policy = policy

    def process_request(self, request, ctx):
        self.log.append("exploder.req")
        if self.phase == "request":
            raise Boom(f"cannot reach {SECRET}")

    def process_response(self, response, ctx):
        self.log.append("exploder.resp")
        if self.phase == "response":
            raise Boom(f"cannot reach {SECRET}")


class AsyncExploder(SyncExploder):
    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        return SyncExploder.process_request(self, request, ctx)

    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        return SyncExploder.process_response(self, response, ctx)


EXPLODERS = [SyncExploder, AsyncExploder]
KIND_IDS = ["sync", "async"]


def recording_app(log: list):
    async def app(scope, receive, send):
        log.append("app")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"12")]})
        await send({"type": "http.response.body", "body": b"app's answer"})
    return app


def chain(log: list, exploder) -> PluginManager:
    manager = PluginManager()
    manager.register(Tracer("outer", log, 10))
    manager.register(exploder)
    manager.register(Tracer("inner", log, 30))
    return manager


async def run(manager: PluginManager, log: list):
    await manager.initialize_all()
    return await asgi_call(wrap(recording_app(log), manager))


# -- request hooks -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", EXPLODERS, ids=KIND_IDS)
async def test_request_hook_exception_closed_policy_answers_500(kind, caplog):
    log: list = []
    manager = chain(log, kind(log, "request", "closed"))
    with caplog.at_level(logging.ERROR, logger="covet_pipe.plugins"):
        result = await run(manager, log)
    assert result.status == 500
    assert result.json() == {"error": "Internal Server Error"}
    assert result.header("content-length") == str(len(result.body))
    # neither the app nor later plugins ran; those that ran before unwound (the failed one did not)
    assert log == ["outer.req", "exploder.req", "outer.resp"]
    assert result.getall("x-trace") == ["outer"]
    [record] = [r for r in caplog.records if r.name == "covet_pipe.plugins"]
    assert "'exploder'" in record.getMessage() and "process_request" in record.getMessage()
    assert "Boom" in record.getMessage() and "500" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is Boom


@pytest.mark.parametrize("kind", EXPLODERS, ids=KIND_IDS)
async def test_request_hook_exception_open_policy_skips_the_plugin(kind, caplog):
    log: list = []
    manager = chain(log, kind(log, "request", "open"))
    with caplog.at_level(logging.ERROR, logger="covet_pipe.plugins"):
        result = await run(manager, log)
    assert (result.status, result.body) == (200, b"app's answer")
    # skipped for this request: its response hook does not run either
    assert log == ["outer.req", "exploder.req", "inner.req", "app", "inner.resp", "outer.resp"]
    assert result.getall("x-trace") == ["inner", "outer"]
    [record] = [r for r in caplog.records if r.name == "covet_pipe.plugins"]
    assert "'exploder'" in record.getMessage() and "skipped" in record.getMessage()


# -- response hooks ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", EXPLODERS, ids=KIND_IDS)
async def test_response_hook_exception_closed_policy_answers_500_and_outer_hooks_unwind(kind):
    log: list = []
    manager = chain(log, kind(log, "response", "closed"))
    result = await run(manager, log)
    assert result.status == 500
    assert result.json() == {"error": "Internal Server Error"}
    assert b"app's answer" not in result.body
    assert log == ["outer.req", "exploder.req", "inner.req", "app", "inner.resp", "exploder.resp",
                   "outer.resp"]
    # the outer plugin's request hook ran, so its response hook sees the error response
    assert result.getall("x-trace") == ["outer"]


@pytest.mark.parametrize("kind", EXPLODERS, ids=KIND_IDS)
async def test_response_hook_exception_open_policy_keeps_the_apps_response(kind):
    log: list = []
    manager = chain(log, kind(log, "response", "open"))
    result = await run(manager, log)
    assert (result.status, result.body) == (200, b"app's answer")
    assert result.getall("x-trace") == ["inner", "outer"]
    assert log[-3:] == ["inner.resp", "exploder.resp", "outer.resp"]


@pytest.mark.parametrize("kind", EXPLODERS, ids=KIND_IDS)
async def test_response_hook_exception_after_short_circuit_closed_policy_answers_500(kind):
    log: list = []

    class Rejecter(Tracer):
        def process_request(self, request, ctx):
            from covet_pipe import MiddlewareAction
            self.log.append("rejecter.req")
            return MiddlewareAction.reject(401, "who are you")

    manager = PluginManager()
    manager.register(Tracer("outer", log, 10))
    manager.register(kind(log, "response", "closed"))
    manager.register(Rejecter("rejecter", log, 30))
    result = await run(manager, log)
    assert result.status == 500
    assert result.json() == {"error": "Internal Server Error"}
    assert "app" not in log
    assert result.getall("x-trace") == ["outer"]


# -- wrong return types --------------------------------------------------------------------------

class WrongReturn(MiddlewarePlugin):
    name = "wrong_return"
    version = "1.0.0"

    def __init__(self, value, policy: str) -> None:
        self.value = value
        self.failure_policy = policy

    def process_request(self, request, ctx):
        return self.value


class AsyncWrongReturn(WrongReturn):
    async def process_request(self, request, ctx):
        return self.value


@pytest.mark.parametrize("value", ["ok", 200, {"status": 403}, True], ids=["str", "int", "dict", "bool"])
@pytest.mark.parametrize("kind", [WrongReturn, AsyncWrongReturn], ids=KIND_IDS)
async def test_request_hook_wrong_return_type_closed_policy_answers_500_naming_it_in_the_log(
        kind, value, caplog):
    log: list = []
    manager = PluginManager()
    manager.register(kind(value, "closed"))
    with caplog.at_level(logging.ERROR, logger="covet_pipe.plugins"):
        result = await run(manager, log)
    assert result.status == 500
    assert log == []
    [record] = [r for r in caplog.records if r.name == "covet_pipe.plugins"]
    text = record.getMessage()
    assert f"process_request of plugin 'wrong_return' returned {type(value).__name__}" in text
    assert "MiddlewareAction.respond(...)" in text
    assert (await manager.get_health_status())["plugins"]["wrong_return"]["errors"] == 1


@pytest.mark.parametrize("kind", [WrongReturn, AsyncWrongReturn], ids=KIND_IDS)
async def test_request_hook_wrong_return_type_open_policy_is_skipped(kind):
    log: list = []
    manager = PluginManager()
    manager.register(kind("ok", "open"))
    result = await run(manager, log)
    assert (result.status, log) == (200, ["app"])


async def test_response_hook_setting_a_bad_status_counts_as_a_failure():
    class BadStatus(MiddlewarePlugin):
        name = "bad_status"
        version = "1.0.0"

        def process_response(self, response, ctx):
            response.status = "teapot"

    manager = PluginManager()
    manager.register(BadStatus())
    result = await run(manager, [])
    assert result.status == 500
    assert (await manager.get_health_status())["plugins"]["bad_status"]["errors"] == 1


# -- the call_next style -------------------------------------------------------------------------

class NextExploder(MiddlewarePlugin):
    name = "next_exploder"
    version = "1.0.0"

    def __init__(self, when: str, policy: str) -> None:
        self.when = when
        self.failure_policy = policy

    async def process_request(self, request, call_next):
        if self.when == "before":
            raise Boom(SECRET)
        response = await call_next(request)
        if self.when == "after":
            raise Boom(SECRET)
        if self.when == "returns-none":
            return None
        return response


@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_call_next_plugin_raising_before_call_next_follows_its_policy(policy):
    log: list = []
    manager = PluginManager()
    manager.register(NextExploder("before", policy))
    result = await run(manager, log)
    if policy == "closed":
        assert (result.status, log) == (500, [])
        assert result.json() == {"error": "Internal Server Error"}
    else:
        assert (result.status, result.body, log) == (200, b"app's answer", ["app"])
    health = await manager.get_health_status()
    assert health["plugins"]["next_exploder"]["errors"] == 1
    assert health["plugins"]["next_exploder"]["skipped_open"] == (1 if policy == "open" else 0)


@pytest.mark.parametrize("when", ["after", "returns-none"])
@pytest.mark.parametrize("policy", ["closed", "open"])
async def test_call_next_plugin_failing_after_call_next_answers_500_and_app_ran_once(policy, when):
    log: list = []
    manager = PluginManager()
    manager.register(NextExploder(when, policy))
    result = await run(manager, log)
    assert result.status == 500
    assert result.json() == {"error": "Internal Server Error"}
    assert log == ["app"]


# -- through a real server: nothing leaks, the server lives on, counters add up ------------------

class Switch(MiddlewarePlugin):
    """Raises on /boom-request (request hook) and /boom-response (response hook)."""

    name = "switch"
    version = "1.0.0"

    def process_request(self, request, ctx):
        if request.path == "/boom-request":
            raise Boom(f"Traceback: password={SECRET}")

    def process_response(self, response, ctx):
        if ctx.request.path == "/boom-response":
            raise Boom(f"Traceback: password={SECRET}")


class NextSwitch(MiddlewarePlugin):
    name = "next_switch"
    version = "1.0.0"
    priority = 2000

    async def process_request(self, request, call_next):
        if request.path == "/boom-next":
            raise Boom(f"Traceback: password={SECRET}")
        return await call_next(request)


def test_failures_never_leak_exception_text_and_the_server_keeps_serving(serve):
    manager = PluginManager()
    manager.register(Switch())
    manager.register(NextSwitch())
    with serve(wrap(recording_app([]), manager)) as s:
        with httpx.Client(base_url=s.url) as client:
            answers = {path: client.get(path) for path in ("/boom-request", "/boom-response", "/boom-next")}
            after = client.get("/fine")
    for path, r in answers.items():
        assert r.status_code == 500, path
        assert r.json() == {"error": "Internal Server Error"}, path
        raw = r.content.decode() + repr(r.headers.raw)
        for leak in (SECRET, "Boom", "Traceback", "switch", ".py"):
            assert leak not in raw, (path, leak)
    assert (after.status_code, after.text) == (200, "app's answer")
    stats = {name: p for name, p in asyncio.run(manager.get_health_status())["plugins"].items()}
    assert stats["switch"]["errors"] == 2
    assert stats["switch"]["calls"] == 4          # request hooks called, one per request
    assert stats["next_switch"]["errors"] == 1
    assert stats["next_switch"]["calls"] == 3     # /boom-request never reached it


# -- what is not a plugin failure ----------------------------------------------------------------

class Cancels(MiddlewarePlugin):
    """Raises CancelledError (a BaseException, not an Exception) from the hook named by *phase*,
    before any await when the hooks are async: the core steps such a hook inline."""

    name = "cancels"
    version = "1.0.0"

    def __init__(self, phase: str) -> None:
        self.phase = phase

    def process_request(self, request, ctx):
        if self.phase == "request":
            raise asyncio.CancelledError()

    def process_response(self, response, ctx):
        if self.phase == "response":
            raise asyncio.CancelledError()


class AsyncCancels(Cancels):
    async def process_request(self, request, ctx):
        return Cancels.process_request(self, request, ctx)

    async def process_response(self, response, ctx):
        return Cancels.process_response(self, response, ctx)


@pytest.mark.parametrize("phase", ["request", "response"])
@pytest.mark.parametrize("kind", [Cancels, AsyncCancels], ids=KIND_IDS)
async def test_a_base_exception_from_a_hook_goes_on_up_and_is_no_plugin_failure(kind, phase):
    log: list = []
    manager = PluginManager()
    manager.register(kind(phase))
    await manager.initialize_all()
    with pytest.raises(asyncio.CancelledError):
        await asgi_call(wrap(recording_app(log), manager))
    [listed] = manager.list_plugins()
    assert listed["stats"]["errors"] == 0 and listed["stats"]["calls"] == 1
    assert log == ([] if phase == "request" else ["app"])
    assert manager.chain.current.inflight == 0


async def test_health_counts_calls_errors_short_circuits_and_open_skips():
    from covet_pipe import MiddlewareAction

    class Flaky(MiddlewarePlugin):
        name = "flaky"
        version = "1.0.0"
        failure_policy = "open"

        def process_request(self, request, ctx):
            if request.path == "/fail":
                raise Boom("x")
            if request.path == "/deny":
                return MiddlewareAction.reject(403)

    manager = PluginManager()
    manager.register(Flaky())
    await manager.initialize_all()
    app = wrap(recording_app([]), manager)
    statuses = [(await asgi_call(app, p)).status for p in ("/ok", "/fail", "/deny", "/fail")]
    assert statuses == [200, 200, 403, 200]
    health = await manager.get_health_status()
    flaky = health["plugins"]["flaky"]
    assert (flaky["calls"], flaky["errors"], flaky["short_circuits"], flaky["skipped_open"]) == (4, 2, 1, 2)
    assert flaky["state"] == "active" and health["status"] == "ok"
    [listed] = manager.list_plugins()
    assert listed["stats"]["errors"] == 2


async def test_a_plugins_error_text_in_lifecycle_logs_stays_on_one_escaped_line(caplog):
    class FailsToStart(MiddlewarePlugin):
        name = "fails_to_start"
        version = "1.0.0"

        async def initialize(self, ctx):
            raise RuntimeError("no database\nERROR forged: the admin password is hunter2")

    class FailsToStop(MiddlewarePlugin):
        name = "fails_to_stop"
        version = "1.0.0"

        async def shutdown(self):
            raise RuntimeError("gone\r\nERROR forged: all plugins stopped")

    manager = PluginManager()
    manager.register(FailsToStart())
    manager.register(FailsToStop())
    with caplog.at_level(logging.ERROR, logger="covet_pipe"):
        await manager.initialize_all()
        await manager.shutdown_all()
    assert "no database\\nERROR forged: the admin password" in caplog.text   # message and traceback
    assert "gone\\r\\nERROR forged: all plugins stopped" in caplog.text
    assert not [line for line in caplog.text.splitlines() if line.lstrip("\r").startswith("ERROR forged")]
