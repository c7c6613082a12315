"""The sandbox families through a served scrape: a helper SIGKILLed from outside, one killed at its
deadline by the supervisor, and a quarantine (the sandbox's own hostile test plugin, on a real uvicorn)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from covet_pipe import PluginConfig, PluginManager, wrap
from covet_pipe.builtin import PrometheusMetrics
from tests.conftest import text_app

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")

HOSTILE = Path(__file__).resolve().parents[1] / "sandbox" / "plugins" / "hostile.py"
WAIT = 15.0     #: bounded waits for a helper to come back or be quarantined


def _sandbox_values(client: httpx.Client) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name.startswith("covet_pipe_sandbox") and s.labels == {"plugin": "hostile"}:
                out[s.name.removeprefix("covet_pipe_sandbox_")] = s.value
    return out


def _wait(what: str, cond: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {WAIT} s waiting for {what}")


def test_helper_ends_kills_restarts_and_quarantine_show_in_the_scrape(serve: Any) -> None:
    manager = PluginManager(PluginConfig(sandbox_call_timeout=0.5))
    manager.register(PrometheusMetrics(manager))
    with serve(wrap(text_app, manager)) as served, httpx.Client(base_url=served.url, timeout=20) as client:
        def run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, served.loop).result(60)

        def helpers() -> list[int]:
            sb = run(manager.get_health_status())["plugins"]["hostile"]["sandbox"]
            return [h["pid"] for h in sb["helpers"]] if sb["state"] == "serving" else []

        run(manager.load_plugin_from_path(str(HOSTILE), sandbox=True))
        assert client.get("/").status_code == 200
        assert _sandbox_values(client) == {"helper_restarts_total": 0, "helper_ends_total": 0,
                                           "helper_kills_total": 0, "quarantines_total": 0, "quarantined": 0}
        [first] = helpers()
        os.kill(first, signal.SIGKILL)                       # from outside: an end, then a restart
        [second] = _wait("a new helper", lambda: [p for p in helpers() if p != first])
        assert _sandbox_values(client) == {"helper_restarts_total": 1, "helper_ends_total": 1,
                                           "helper_kills_total": 0, "quarantines_total": 0, "quarantined": 0}
        assert client.get("/sleep", headers={"x-sleep": "20"}).status_code == 503   # the deadline: killed
        _wait("a third helper", lambda: [p for p in helpers() if p not in (first, second)])
        assert _sandbox_values(client) == {"helper_restarts_total": 2, "helper_ends_total": 2,
                                           "helper_kills_total": 1, "quarantines_total": 0, "quarantined": 0}
        assert client.get("/exec").status_code == 503        # a kill rule: quarantined
        _wait("the quarantine", lambda: _sandbox_values(client)["quarantined"] == 1)
        assert _sandbox_values(client) == {"helper_restarts_total": 2, "helper_ends_total": 3,
                                           "helper_kills_total": 1, "quarantines_total": 1, "quarantined": 1}
