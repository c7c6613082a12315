"""The chain's contract: order, ties, short-circuits, the onion, both styles, edits, bodies."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json

import httpx
import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, Response, wrap
from tests._helpers import asgi_call, echo_app


class SyncRecorder(MiddlewarePlugin):
    """Logs its two hooks; def hooks."""

    version = "1.0.0"

    def __init__(self, name: str, log: list, priority: int = 1000) -> None:
        self.name = name
        self.log = log
        self.priority = priority

    def process_request(self, request, ctx):
        self.log.append(f"{self.name}.req")

    def process_response(self, response, ctx):
        self.log.append(f"{self.name}.resp")


class AsyncRecorder(SyncRecorder):
    """Logs its two hooks; async def hooks that really suspend."""

    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        self.log.append(f"{self.name}.req")

    async def process_response(self, response, ctx):
        await asyncio.sleep(0)
        self.log.append(f"{self.name}.resp")


class CallNextRecorder(MiddlewarePlugin):
    """The seed's style: logs before and after call_next."""

    version = "1.0.0"

    def __init__(self, name: str, log: list, priority: int = 1000) -> None:
        self.name = name
        self.log = log
        self.priority = priority

    async def process_request(self, request, call_next):
        self.log.append(f"{self.name}.before")
        response = await call_next(request)
        self.log.append(f"{self.name}.after")
        return response


RECORDERS = {"sync": SyncRecorder, "async": AsyncRecorder}


def logging_app(log: list):
    async def app(scope, receive, send):
        log.append("app")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    return app


async def run_one(manager: PluginManager, app, path: str = "/", **kw):
    await manager.initialize_all()
    return await asgi_call(wrap(app, manager), path, **kw)


# -- order ---------------------------------------------------------------------------------------

SPECS = [("b", 10), ("a", 10), ("c", 5), ("d", 1000)]


@pytest.mark.parametrize("registration", [
    list(SPECS), list(reversed(SPECS)), [SPECS[2], SPECS[0], SPECS[3], SPECS[1]],
], ids=["forward", "reverse", "shuffled"])
async def test_chain_order_is_priority_then_name_whatever_registration_order(registration):
    log: list = []
    manager = PluginManager()
    for name, prio in registration:
        manager.register(SyncRecorder(name, log, prio))
    result = await run_one(manager, logging_app(log))
    assert result.status == 200
    assert [e.name for e in manager.get_middleware_chain()] == ["c", "a", "b", "d"]
    assert log == ["c.req", "a.req", "b.req", "d.req", "app", "d.resp", "b.resp", "a.resp", "c.resp"]


async def test_equal_priorities_run_in_name_order():
    log: list = []
    manager = PluginManager()
    for name in ("zeta", "alpha", "mid"):
        manager.register(SyncRecorder(name, log, 7))
    await run_one(manager, logging_app(log))
    assert log[:3] == ["alpha.req", "mid.req", "zeta.req"]


async def test_register_priority_argument_overrides_class_priority():
    log: list = []
    manager = PluginManager()
    manager.register(SyncRecorder("first", log, 500))
    manager.register(SyncRecorder("second", log, 1), priority=900)
    await run_one(manager, logging_app(log))
    assert log[:2] == ["first.req", "second.req"]


# -- onion and hook kinds ------------------------------------------------------------------------

@pytest.mark.parametrize("kinds", [("sync",) * 3, ("async",) * 3, ("sync", "async", "sync"),
                                   ("async", "sync", "async")],
                         ids=["sync", "async", "sync-async-sync", "async-sync-async"])
async def test_response_hooks_run_reversed_for_every_kind_of_hook(kinds):
    log: list = []
    manager = PluginManager()
    for i, kind in enumerate(kinds):
        manager.register(RECORDERS[kind](f"p{i}", log, (i + 1) * 10))
    result = await run_one(manager, logging_app(log))
    assert result.status == 200 and result.body == b"ok"
    assert log == ["p0.req", "p1.req", "p2.req", "app", "p2.resp", "p1.resp", "p0.resp"]


class Blocker(MiddlewarePlugin):
    version = "1.0.0"
    priority = 20

    def __init__(self, log: list, action) -> None:
        self.name = "blocker"
        self.log = log
        self.action = action

    def process_request(self, request, ctx):
        self.log.append("blocker.req")
        return self.action()

    def process_response(self, response, ctx):
        self.log.append("blocker.resp")
        response.headers.add("x-blocker-saw", str(response.status))


class AsyncBlocker(Blocker):
    async def process_request(self, request, ctx):
        await asyncio.sleep(0)
        self.log.append("blocker.req")
        return self.action()


@pytest.mark.parametrize("blocker", [Blocker, AsyncBlocker], ids=["sync", "async"])
async def test_reject_skips_app_and_later_plugins_and_unwinds_those_that_ran(blocker):
    log: list = []
    manager = PluginManager()
    manager.register(SyncRecorder("early", log, 10))
    manager.register(blocker(log, lambda: MiddlewareAction.reject(403, "no entry")))
    manager.register(SyncRecorder("late", log, 30))
    result = await run_one(manager, logging_app(log))
    assert result.status == 403
    assert json.loads(result.body) == {"error": "no entry"}
    assert result.header("content-type") == "application/json"
    assert result.header("content-length") == str(len(result.body))
    assert result.header("x-blocker-saw") == "403"
    assert log == ["early.req", "blocker.req", "blocker.resp", "early.resp"]
    health = await manager.get_health_status()
    assert health["plugins"]["blocker"]["short_circuits"] == 1
    assert health["plugins"]["late"]["calls"] == 0


@pytest.mark.parametrize("blocker", [Blocker, AsyncBlocker], ids=["sync", "async"])
async def test_respond_answers_with_the_plugins_response(blocker):
    log: list = []
    manager = PluginManager()
    made = Response(202, {"x-made": "yes", "set-cookie": "a=1"}, "accepted later")
    made.headers.add("set-cookie", "b=2")
    manager.register(blocker(log, lambda: MiddlewareAction.respond(made)))
    result = await run_one(manager, logging_app(log))
    assert (result.status, result.body) == (202, b"accepted later")
    assert result.header("x-made") == "yes"
    assert result.getall("set-cookie") == ["a=1", "b=2"]
    assert result.header("content-type") == "text/plain; charset=utf-8"
    assert "app" not in log


async def test_returning_a_response_directly_short_circuits_like_respond():
    log: list = []

    class Direct(SyncRecorder):
        def process_request(self, request, ctx):
            return Response(204)

    manager = PluginManager()
    manager.register(Direct("direct", log))
    result = await run_one(manager, logging_app(log))
    assert result.status == 204
    assert result.header("content-length") is None
    assert log == ["direct.resp"]


async def test_continue_action_and_none_both_go_on():
    log: list = []

    class Explicit(SyncRecorder):
        def process_request(self, request, ctx):
            self.log.append("explicit.req")
            return MiddlewareAction.CONTINUE

    manager = PluginManager()
    manager.register(Explicit("explicit", log, 1))
    manager.register(SyncRecorder("implicit", log, 2))
    result = await run_one(manager, logging_app(log))
    assert result.status == 200
    assert log[:3] == ["explicit.req", "implicit.req", "app"]


def _record(log: list, answer, thing, ctx):
    log.append((type(thing).__name__, ctx.plugin_name))
    return answer


class _CallableHook:
    """A hook that is an object with __call__ (no vectorcall of its own)."""

    def __init__(self, log: list, answer) -> None:
        self.log = log
        self.answer = answer

    def __call__(self, thing, ctx):
        return _record(self.log, self.answer, thing, ctx)


def _closure(log: list, answer):
    def hook(thing, ctx):
        return _record(log, answer, thing, ctx)
    return hook


@pytest.mark.parametrize("make", [
    _CallableHook, lambda log, answer: functools.partial(_record, log, answer), _closure,
], ids=["callable-object", "partial", "function"])
async def test_hooks_that_are_not_bound_methods_get_their_two_arguments_and_can_answer(make):
    log: list = []

    class Attached(MiddlewarePlugin):
        """Its hooks are instance attributes: the core calls whatever callable they are."""

        version = "1.0.0"

        def __init__(self, name: str, priority: int, answer=None) -> None:
            self.name = name
            self.priority = priority
            self.process_request = make(log, answer)
            self.process_response = make(log, None)

        def process_request(self, request, ctx):
            raise AssertionError("the instance's hook runs, not the class's")

        def process_response(self, response, ctx):
            raise AssertionError("the instance's hook runs, not the class's")

    manager = PluginManager()
    manager.register(Attached("first", 1))
    manager.register(Attached("second", 2, answer=MiddlewareAction.reject(418)))
    manager.register(Attached("third", 3))
    result = await run_one(manager, logging_app(log))
    assert result.status == 418
    assert log == [("Request", "first"), ("Request", "second"), ("Response", "second"),
                   ("Response", "first")]


async def test_ctx_state_is_per_plugin_and_shared_by_its_two_hooks():
    seen: dict = {}

    class Stateful(MiddlewarePlugin):
        version = "1.0.0"

        def __init__(self, name: str) -> None:
            self.name = name

        def process_request(self, request, ctx):
            assert ctx.state == {}
            ctx.state["mine"] = self.name

        def process_response(self, response, ctx):
            seen[self.name] = dict(ctx.state)

    manager = PluginManager()
    manager.register(Stateful("one"))
    manager.register(Stateful("two"))
    await run_one(manager, logging_app([]))
    await asgi_call(wrap(logging_app([]), manager))   # a second request starts empty again
    assert seen == {"one": {"mine": "one"}, "two": {"mine": "two"}}


# -- both styles in one chain --------------------------------------------------------------------

async def test_mixed_styles_follow_one_order_and_unwind_reversed():
    log: list = []
    manager = PluginManager()
    # registered out of order on purpose
    manager.register(AsyncRecorder("h3", log, 50))
    manager.register(CallNextRecorder("c2", log, 40))
    manager.register(SyncRecorder("h1", log, 10))
    manager.register(SyncRecorder("h2", log, 30))
    manager.register(CallNextRecorder("c1", log, 20))
    result = await run_one(manager, logging_app(log))
    assert (result.status, result.body) == (200, b"ok")
    assert [(e.name, e.style) for e in manager.get_middleware_chain()] == [
        ("h1", "hook"), ("c1", "call_next"), ("h2", "hook"), ("c2", "call_next"), ("h3", "hook")]
    assert log == ["h1.req", "c1.before", "h2.req", "c2.before", "h3.req", "app",
                   "h3.resp", "c2.after", "h2.resp", "c1.after", "h1.resp"]


@pytest.mark.parametrize("outer", ["hook", "call_next"])
async def test_call_next_plugin_answering_itself_skips_the_rest_and_unwinds_outer(outer):
    log: list = []

    class Answer(MiddlewarePlugin):
        name = "answer"
        version = "1.0.0"
        priority = 20

        async def process_request(self, request, call_next):
            log.append("answer.before")
            return Response(418, {"x-answer": "1"}, b"teapot")

    manager = PluginManager()
    manager.register((SyncRecorder if outer == "hook" else CallNextRecorder)("outer", log, 10))
    manager.register(Answer())
    manager.register(SyncRecorder("inner", log, 30))
    result = await run_one(manager, logging_app(log))
    assert (result.status, result.body, result.header("x-answer")) == (418, b"teapot", "1")
    assert result.header("content-length") == "6"
    assert log == ["outer.req" if outer == "hook" else "outer.before", "answer.before",
                   "outer.resp" if outer == "hook" else "outer.after"]


async def test_hook_rejecting_inside_a_call_next_plugin_reaches_it_as_its_response():
    log: list = []
    seen: list = []

    class Outer(CallNextRecorder):
        async def process_request(self, request, call_next):
            response = await call_next(request)
            seen.append(response.status)
            response.headers.add("x-outer", "1")
            return response

    manager = PluginManager()
    manager.register(Outer("outer", log, 10))
    manager.register(Blocker(log, lambda: MiddlewareAction.reject(429, "slow down")))
    result = await run_one(manager, logging_app(log))
    assert (result.status, result.json(), result.header("x-outer")) == (429, {"error": "slow down"}, "1")
    assert seen == [429]
    assert log == ["blocker.req", "blocker.resp"]


# -- edits reach the app (through a real server) -------------------------------------------------

class HookEditor(MiddlewarePlugin):
    name = "editor"
    version = "1.0.0"

    def process_request(self, request, ctx):
        request.headers.set("x-set", "by-plugin")
        request.headers.add("x-multi", "two")
        request.headers.remove("x-drop")
        request.path = "/rewritten/a b"
        request.query_string = "q=new"
        request.method = "put"


class CallNextEditor(MiddlewarePlugin):
    name = "editor"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        HookEditor.process_request(self, request, None)
        return await call_next(request)


@pytest.mark.parametrize("editor", [HookEditor, CallNextEditor], ids=["hook", "call_next"])
def test_request_edits_reach_the_app_and_not_the_server_scope(serve, editor):
    manager = PluginManager()
    manager.register(editor())
    with serve(wrap(echo_app, manager)) as s:
        r = httpx.get(s.url + "/original?q=old", headers=[("x-drop", "gone"), ("x-multi", "one")])
    assert r.status_code == 200
    seen = r.json()
    headers = seen["headers"]
    assert seen["method"] == "PUT"
    assert seen["path"] == "/rewritten/a b"
    assert seen["raw_path"] == "/rewritten/a%20b"      # raw_path kept in step with path
    assert seen["query"] == "q=new"
    assert ["x-set", "by-plugin"] in headers
    assert [v for k, v in headers if k == "x-multi"] == ["one", "two"]
    assert not [k for k, _ in headers if k == "x-drop"]


def test_edits_by_several_plugins_accumulate_in_order(serve):
    class Tag(MiddlewarePlugin):
        version = "1.0.0"

        def __init__(self, name, prio):
            self.name = name
            self.priority = prio

        def process_request(self, request, ctx):
            request.headers.add("x-trail", self.name)

    class NextTag(Tag):
        async def process_request(self, request, call_next):
            request.headers.add("x-trail", self.name)
            return await call_next(request)

    manager = PluginManager()
    manager.register(Tag("t3", 30))
    manager.register(NextTag("t2", 20))
    manager.register(Tag("t1", 10))
    manager.register(Tag("t4", 40))
    with serve(wrap(echo_app, manager)) as s:
        r = httpx.get(s.url + "/")
    assert [v for k, v in r.json()["headers"] if k == "x-trail"] == ["t1", "t2", "t3", "t4"]


# -- request bodies ------------------------------------------------------------------------------

BODY = bytes(range(256)) * 1024       # 256 KiB: uvicorn hands it over in several chunks


class HookBodyReader(MiddlewarePlugin):
    name = "body_reader"
    version = "1.0.0"
    needs_body = True

    def __init__(self) -> None:
        self.seen: list = []

    def process_request(self, request, ctx):
        self.seen.append(hashlib.sha256(request.body).hexdigest())


class CallNextBodyReader(HookBodyReader):
    async def process_request(self, request, call_next):
        HookBodyReader.process_request(self, request, None)
        return await call_next(request)


class BodyBlind(MiddlewarePlugin):
    name = "body_blind"
    version = "1.0.0"
    priority = 1

    def __init__(self) -> None:
        self.seen: list = []

    def process_request(self, request, ctx):
        self.seen.append(request.body)


def body_app():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return await echo_app(scope, receive, send)
        data = b""
        chunks = 0
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            data += message.get("body", b"")
            chunks += 1
            if not message.get("more_body"):
                break
        payload = json.dumps({"sha": hashlib.sha256(data).hexdigest(), "len": len(data)}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})
    return app


@pytest.mark.parametrize("reader", [HookBodyReader, CallNextBodyReader], ids=["hook", "call_next"])
def test_needs_body_plugin_reads_the_body_and_the_app_gets_it_replayed(serve, reader):
    manager = PluginManager()
    plugin = reader()
    manager.register(plugin)
    with serve(wrap(body_app(), manager)) as s:
        r = httpx.post(s.url + "/upload", content=BODY)
        empty = httpx.post(s.url + "/upload", content=b"")
    digest = hashlib.sha256(BODY).hexdigest()
    assert r.status_code == 200
    assert r.json() == {"sha": digest, "len": len(BODY)}
    assert plugin.seen == [digest, hashlib.sha256(b"").hexdigest()]
    assert empty.json()["len"] == 0


def test_body_streams_to_the_app_when_no_plugin_needs_it(serve):
    manager = PluginManager()
    blind = BodyBlind()
    manager.register(blind)
    with serve(wrap(body_app(), manager)) as s:
        r = httpx.post(s.url + "/upload", content=iter([BODY[:1000], BODY[1000:]]))
    assert r.json() == {"sha": hashlib.sha256(BODY).hexdigest(), "len": len(BODY)}
    assert blind.seen == [None]


def test_every_registration_order_gives_the_same_chain():
    names = [("n1", 3), ("n2", 3), ("n3", 1), ("n4", 2)]
    chains = set()
    for perm in itertools.permutations(names):
        manager = PluginManager()
        for name, prio in perm:
            manager.register(SyncRecorder(name, [], prio))
        asyncio.run(manager.initialize_all())
        chains.add(tuple(e.name for e in manager.get_middleware_chain()))
    assert chains == {("n3", "n4", "n1", "n2")}


async def test_needs_body_over_the_limit_answers_413_without_running_hooks():
    log: list = []

    class Reader(SyncRecorder):
        needs_body = True

    manager = PluginManager()
    manager.register(Reader("reader", log))
    result = await run_one(manager, logging_app(log), method="POST", body=b"x" * (16 * 1024 * 1024 + 1))
    assert result.status == 413
    assert result.json() == {"error": "Request body too large for the plugins that read it"}
    assert log == []


async def test_cancelling_a_request_suspended_in_an_async_hook_reaches_the_hook_and_releases_the_chain():
    import asyncio

    from covet_pipe import MiddlewarePlugin, PluginManager, wrap
    from tests._helpers import http_scope

    seen: list[str] = []
    entered = asyncio.Event()

    class Waits(MiddlewarePlugin):
        name = "waits"
        version = "1.0.0"

        async def process_request(self, request, ctx):
            entered.set()
            try:
                await asyncio.Event().wait()      # suspends: the core hands it to the loop
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

    manager = PluginManager()
    manager.register(Waits())
    await manager.initialize_all()
    app_ran: list[bool] = []

    async def app(scope, receive, send):
        app_ran.append(True)

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        pass

    task = asyncio.ensure_future(wrap(app, manager)(http_scope("/"), receive, send))
    await asyncio.wait_for(entered.wait(), 10)
    assert manager.chain.current.inflight == 1
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert seen == ["cancelled"] and app_ran == []
    assert manager.chain.current.inflight == 0
