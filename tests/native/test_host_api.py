"""Native plugins in the chain, through real requests: order beside Python plugins, the view,
the host functions, request_data and on_request_done, failures and counters."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from covet_pipe import MiddlewareAction, MiddlewarePlugin, Pipeline, PluginConfig, PluginManager, Response
from covet_pipe.native import NativePlugin, load_native
from covet_pipe.testing import call
from tests.native._cplugins import cplugins, probe, stats  # noqa: F401 (the fixture)
from tests._helpers import lifespan

#: builds the C test plugins under pytest's temporary folders
pytestmark = pytest.mark.usefixtures("cplugins")

COVET_E_INVALID, COVET_E_PHASE, COVET_E_NOTFOUND = -2, -3, -4


async def app(scope: dict, receive: Any, send: Any) -> None:
    """200 JSON of the request headers the app got; /raise raises."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["path"] == "/raise":
        raise RuntimeError("the app broke")
    body = json.dumps({k.decode(): v.decode() for k, v in scope["headers"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-remove-me", b"1"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _append(current: str | None, tag: str) -> str:
    return f"{current},{tag}" if current else tag


class Tracer(MiddlewarePlugin):
    """A Python plugin that leaves the same traces as the native probe (x-order, x-resp-order, x-py).

    The request header x-NAME-act picks: raise, respond, replace (the response headers, wholesale).
    """

    version = "1.0.0"

    def __init__(self, name: str, priority: int) -> None:
        self.name = name
        self.priority = priority

    def process_request(self, request: Any, ctx: Any) -> Any:
        h = request.headers
        h.set("x-order", _append(h.get("x-order"), self.name))
        h.set(f"x-{self.name}-saw-alpha", h.get("x-alpha-from") or "-")
        h.set("x-py", self.name)
        act = h.get(f"x-{self.name}-act")
        if act == "raise":
            raise RuntimeError(f"{self.name} broke")
        if act == "respond":
            return MiddlewareAction.respond(Response(202, {"x-answered-by": self.name}, b"early"))
        return None

    def process_response(self, response: Any, ctx: Any) -> None:
        order = _append(response.headers.get("x-resp-order"), self.name)
        if ctx.request.headers.get(f"x-{self.name}-act") == "replace":
            kept = [(k, v) for k, v in response.headers.raw if k not in (b"x-py", b"x-resp-order")]
            response.headers = [*kept, (b"x-py", self.name.encode()), (b"x-resp-order", order.encode())]
        else:
            response.headers.set("x-resp-order", order)
            response.headers.set("x-py", self.name)


def _natives() -> dict[str, NativePlugin]:
    return {"alpha": load_native(probe("alpha", priority=10)),
            "delta": load_native(probe("delta", priority=30))}


async def _manager(natives: dict[str, NativePlugin], *extra: Any, **settings: Any) -> PluginManager:
    manager = PluginManager(PluginConfig(plugin_settings=settings))
    # registered out of order on purpose: the chain sorts by (priority, name)
    manager.register(natives["delta"])
    manager.register(Tracer("charlie", 30))
    manager.register(Tracer("bravo", 20))
    manager.register(natives["alpha"])
    for plugin in extra:
        manager.register(plugin)
    await manager.initialize_all()
    return manager


def test_native_and_python_interleave_by_priority_then_name_over_uvicorn(serve: Any) -> None:
    natives = _natives()
    manager = PluginManager()
    for p in (natives["delta"], Tracer("charlie", 30), Tracer("bravo", 20), natives["alpha"]):
        manager.register(p)
    with serve(Pipeline(app, manager)) as s:
        r = httpx.get(s.url + "/", timeout=10)
        chain = [(e.name, e.kind) for e in manager.get_middleware_chain()]
    seen = r.json()
    assert r.status_code == 200
    assert seen["x-order"] == "alpha,bravo,charlie,delta"
    assert r.headers["x-resp-order"] == "delta,charlie,bravo,alpha"
    assert chain == [("alpha", "native"), ("bravo", "middleware"), ("charlie", "middleware"),
                     ("delta", "native")]


async def test_native_request_edits_reach_python_plugins_and_app_and_back() -> None:
    manager = await _manager(_natives())
    r = await call(Pipeline(app, manager), path="/p")
    seen = json.loads(r.body)
    assert seen["x-alpha-from"] == "alpha" and seen["x-delta-from"] == "delta"   # the app got them
    assert seen["x-bravo-saw-alpha"] == "alpha"    # a Python plugin after a native one sees its edit
    assert seen["x-alpha-saw"] == "-"               # no Python plugin ran before alpha
    assert seen["x-delta-saw"] == "charlie"         # delta's view was rebuilt after charlie's edit
    assert seen["x-alpha-path"] == "/p"
    # response phase: delta runs first (nothing set x-py yet), alpha last, after bravo's edit
    assert r.headers["x-delta-view-x-py"] == "-"
    assert r.headers["x-alpha-view-x-py"] == "bravo"
    assert r.headers["x-alpha-view-status"] == "200"
    await manager.shutdown_all()


class Replacer(MiddlewarePlugin):
    """Replaces the response's headers wholesale (a new multi-map), adding x-py."""

    name = "replacer"
    version = "1.0.0"
    priority = 20

    def process_response(self, response: Any, ctx: Any) -> None:
        response.headers = [*response.headers.raw, (b"x-py", b"replaced")]


async def test_native_view_after_python_replaced_response_headers_is_fresh() -> None:
    natives = _natives()
    manager = PluginManager()
    for plugin in (natives["alpha"], Replacer(), natives["delta"]):
        manager.register(plugin)
    await manager.initialize_all()
    r = await call(Pipeline(app, manager))
    assert r.headers["x-delta-view-x-py"] == "-"
    # the replaced headers start a new multi-map: alpha's view must show them, not delta's
    assert r.headers["x-alpha-view-x-py"] == "replaced"
    assert r.headers["x-resp-order"] == "delta,alpha"
    await manager.shutdown_all()


async def test_host_functions_outside_their_phase_return_phase_error() -> None:
    manager = await _manager(_natives())
    r = await call(Pipeline(app, manager))
    seen = json.loads(r.body)
    assert int(seen["x-alpha-setstatus"]) == COVET_E_PHASE     # set_status in the request phase
    assert int(r.headers["x-alpha-respond"]) == COVET_E_PHASE  # respond() in the response phase
    assert int(seen["x-alpha-notfound"]) == COVET_E_NOTFOUND   # get_header of a missing header
    assert r.status == 200
    await manager.shutdown_all()


async def test_native_response_phase_sets_status_and_edits_headers() -> None:
    manager = await _manager(_natives())
    r = await call(Pipeline(app, manager), headers={"x-alpha-act": "status"})
    assert r.status == 203
    assert "x-remove-me" not in r.headers
    assert int(r.headers["x-alpha-removed"]) == 0
    assert int(r.headers["x-alpha-removed-again"]) == COVET_E_NOTFOUND
    assert int(r.headers["x-alpha-badstatus"]) == COVET_E_INVALID
    assert r.headers["x-alpha-replaced"] == "alpha"
    await manager.shutdown_all()


async def test_config_get_reads_plugin_settings_and_reports_missing_keys() -> None:
    manager = await _manager(_natives(), alpha={"greeting": "hello"}, delta={"other": 42})
    seen = json.loads((await call(Pipeline(app, manager))).body)
    assert seen["x-alpha-greeting"] == "hello"
    assert seen["x-delta-greeting"] == "NOTFOUND"
    await manager.shutdown_all()
    manager = await _manager(_natives(), delta={"greeting": 42})
    seen = json.loads((await call(Pipeline(app, manager))).body)
    assert seen["x-delta-greeting"] == "42"
    await manager.shutdown_all()


async def test_request_data_set_in_on_request_is_read_in_on_response() -> None:
    natives = _natives()
    manager = await _manager(natives)
    pipeline = Pipeline(app, manager)
    first = await call(pipeline)
    second = await call(pipeline)
    a1, a2 = (int(r.headers["x-alpha-data"].split("#")[1]) for r in (first, second))
    assert first.headers["x-alpha-data"].startswith("alpha#")
    assert second.headers["x-delta-data"].startswith("delta#")
    assert a2 == a1 + 1, "each request has its own request_data"
    await manager.shutdown_all()


#: (request headers, path, expected status or exception, which natives' on_request ran)
DONE_CASES = {
    "normal": ({}, "/", 200, ("alpha", "delta")),
    "native-respond": ({"x-alpha-act": "respond"}, "/", 418, ("alpha",)),
    "python-short-circuit": ({"x-charlie-act": "respond"}, "/", 202, ("alpha",)),
    "python-raises": ({"x-bravo-act": "raise"}, "/", 500, ("alpha",)),
    "app-raises": ({}, "/raise", 500, ("alpha", "delta")),     # the pipeline answers for the app
    "native-error": ({"x-delta-act": "error"}, "/", 500, ("alpha", "delta")),
    "native-unknown-code": ({"x-delta-act": "code7"}, "/", 500, ("alpha", "delta")),
    "native-respond-without-respond": ({"x-alpha-act": "respond-noop"}, "/", 500, ("alpha",)),
    "native-response-error": ({"x-delta-act": "resp-error"}, "/", 500, ("alpha", "delta")),
    "native-response-unknown-code": ({"x-alpha-act": "resp-code7"}, "/", 500, ("alpha", "delta")),
    "native-response-respond": ({"x-alpha-act": "resp-respond"}, "/", 500, ("alpha", "delta")),
}


@pytest.mark.parametrize("case", list(DONE_CASES))
async def test_on_request_done_runs_once_per_request_whatever_happens(case: str) -> None:
    headers, path, expect, ran = DONE_CASES[case]
    natives = _natives()
    manager = await _manager(natives)
    before = {n: stats(p) for n, p in natives.items()}
    pipeline = Pipeline(app, manager)
    if isinstance(expect, int):
        r = await call(pipeline, path=path, headers=headers)
        assert r.status == expect
        assert b"Traceback" not in r.body and b"boom" not in r.body
    else:
        with pytest.raises(expect):
            await call(pipeline, path=path, headers=headers)
    for name, plugin in natives.items():
        after = stats(plugin)
        assert after["request"] - before[name]["request"] == (name in ran), name
        assert after["done"] - before[name]["done"] == (name in ran), f"{name}: on_request_done count"
        assert after["freed"] - before[name]["freed"] == after["allocated"] - before[name]["allocated"]
        assert after["no_gil"] == 0
    await manager.shutdown_all()


async def test_native_failures_count_and_log_plugin_and_code(caplog: pytest.LogCaptureFixture) -> None:
    natives = _natives()
    manager = await _manager(natives)
    pipeline = Pipeline(app, manager)
    with caplog.at_level(logging.ERROR, logger="covet_pipe"):
        assert (await call(pipeline, headers={"x-delta-act": "code7"})).status == 500
    assert any("'delta'" in r.getMessage() and "returned 7, which is not a covet result code"
               in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="covet_pipe"):
        assert (await call(pipeline, headers={"x-delta-act": "error"})).status == 500
    assert any("'delta'" in r.getMessage() and "returned COVET_ERROR: boom from delta" in r.getMessage()
               for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="covet_pipe"):
        assert (await call(pipeline, headers={"x-alpha-act": "respond-noop"})).status == 500
    assert any("'alpha'" in r.getMessage() and "COVET_RESPOND without calling host->respond()"
               in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="covet_pipe"):
        assert (await call(pipeline, headers={"x-alpha-act": "resp-respond"})).status == 500
    assert any("'alpha'" in r.getMessage() and "returned COVET_RESPOND from on_response, where only "
               "COVET_OK or COVET_ERROR may be returned" in r.getMessage() for r in caplog.records)
    assert (await call(pipeline, headers={"x-alpha-act": "respond"})).status == 418
    health = await manager.get_health_status()
    assert health["plugins"]["delta"]["errors"] == 2
    assert health["plugins"]["alpha"]["errors"] == 2
    assert health["plugins"]["alpha"]["short_circuits"] == 1
    assert health["plugins"]["alpha"]["calls"] == 5
    assert health["plugins"]["delta"]["calls"] == 3   # alpha answered two of them alone
    await manager.shutdown_all()


async def test_native_plugin_answers_with_respond() -> None:
    manager = await _manager(_natives())
    r = await call(Pipeline(app, manager), headers={"x-alpha-act": "respond"})
    assert (r.status, r.body, r.headers["content-type"]) == (418, b"teapot from alpha", "text/plain")
    assert r.headers["x-alpha-data"].startswith("alpha#"), "its own on_response ran on its answer"
    assert "x-delta-data" not in r.headers and "x-resp-order" in r.headers
    assert r.headers["x-resp-order"] == "alpha"
    await manager.shutdown_all()


async def test_fail_open_native_error_is_skipped() -> None:
    natives = _natives()
    lenient = load_native(probe("lenient", priority=15, FLAGS="COVET_FLAG_FAIL_OPEN"))
    manager = await _manager(natives, lenient)
    before = stats(lenient)
    r = await call(Pipeline(app, manager), headers={"x-lenient-act": "error"})
    assert r.status == 200
    assert json.loads(r.body)["x-order"] == "alpha,lenient,bravo,charlie,delta"
    assert "x-lenient-data" not in r.headers, "a skipped plugin's on_response does not run"
    assert r.headers["x-resp-order"] == "delta,charlie,bravo,alpha"
    assert stats(lenient)["done"] - before["done"] == 1
    health = await manager.get_health_status()
    assert (health["plugins"]["lenient"]["errors"], health["plugins"]["lenient"]["skipped_open"]) == (1, 1)
    assert {p["name"]: p["failure_policy"] for p in manager.list_plugins()}["lenient"] == "open"
    await manager.shutdown_all()


async def test_list_plugins_and_health_show_native_kind_and_counters() -> None:
    natives = _natives()
    manager = await _manager(natives)
    pipeline = Pipeline(app, manager)
    for _ in range(3):
        await call(pipeline)
    info = {p["name"]: p for p in manager.list_plugins()}
    assert "native" in info["alpha"]["kinds"] and "native" not in info["bravo"]["kinds"]
    assert info["alpha"]["metadata"]["abi"] == "1.1"
    assert info["alpha"]["metadata"]["hooks"] == ["init", "shutdown", "on_request", "on_response",
                                                  "on_request_done"]
    assert info["alpha"]["stats"]["calls"] == 3
    health = await manager.get_health_status()
    assert health["plugins"]["alpha"]["state"] == "active"
    assert health["plugins"]["alpha"]["calls"] == 3
    await manager.shutdown_all()
    assert stats(natives["alpha"])["shutdown"] >= 1


async def test_init_hooks_and_shutdown_run_with_the_gil_held() -> None:
    # init() calls config_get, a host function that touches Python objects: without the GIL
    # it crashed the process
    plugin = load_native(probe("gil_probe"))
    before = stats(plugin)
    manager = PluginManager(PluginConfig(plugin_settings={"gil_probe": {"greeting": "hi"}}))
    manager.register(plugin)
    await manager.initialize_all()
    r = await call(Pipeline(app, manager))
    assert json.loads(r.body)["x-gil_probe-greeting"] == "hi"
    await manager.shutdown_all()
    after = stats(plugin)
    assert [after[k] - before[k] for k in ("init", "request", "response", "done", "shutdown")] == [1] * 5
    assert after["no_gil"] == 0
