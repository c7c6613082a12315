"""The pieces of `serve --admin` that are plain functions: the address and the merge of workers' answers."""

from __future__ import annotations

import json

import pytest

from covet_pipe.cli.tables import health_table, plugins_table, reload_lines
from covet_pipe.server.admin_fanout import Answer, merge_answers
from covet_pipe.server.config import ServeConfig


@pytest.mark.parametrize("given, address", [
    ("9901", ("127.0.0.1", 9901)), (":9901", ("127.0.0.1", 9901)), ("127.0.0.1:9901", ("127.0.0.1", 9901)),
    ("0.0.0.0:9901", ("0.0.0.0", 9901)), ("[::1]:9901", ("::1", 9901)), ("unix:/run/a.sock", "/run/a.sock"),
])
def test_admin_address(given: str, address: object) -> None:
    assert ServeConfig(admin=given).admin_address() == address


@pytest.mark.parametrize("given", ["", "127.0.0.1", "host:port", "1:70000", "unix:"])
def test_bad_admin_address_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="ServeConfig.admin"):
        ServeConfig(admin=given)


def _answer(slot: int, status: int, document: object, content_type: str = "application/json") -> Answer:
    return Answer(slot, 100 + slot, status, content_type, json.dumps(document).encode())


def test_equal_answers_are_one_document() -> None:
    doc = {"reloaded": "stamp", "version": "2"}
    status, content_type, body, headers = merge_answers([_answer(0, 200, doc), _answer(1, 200, doc)])
    assert (status, content_type, json.loads(body)) == (200, "application/json", doc)
    assert (b"x-covet-pipe-workers", b"2") in headers
    assert reload_lines("stamp", json.loads(body)) == ["reloaded stamp (version 2)"]


def test_differing_answers_are_per_worker_with_the_worst_status() -> None:
    ok = {"reloaded": "stamp", "version": "2"}
    failed = {"error": "reloading 'stamp' failed: boom", "serving": "the old version keeps serving"}
    status, _, body, _ = merge_answers([_answer(0, 200, ok), _answer(1, 409, failed)])
    merged = json.loads(body)
    assert status == 409
    assert merged == {"workers": [{"worker": 0, "pid": 100, "status": 200, "document": ok},
                                  {"worker": 1, "pid": 101, "status": 409, "document": failed}]}
    assert reload_lines("stamp", merged) == [
        "worker 0/100: reloaded stamp (version 2)",
        "worker 1/101: reloading 'stamp' failed: boom; the old version keeps serving"]


def test_a_worker_that_did_not_answer_shows_in_its_row() -> None:
    plugins = [{"name": "stamp", "version": "1", "kinds": ["middleware"], "style": "hook", "state": "active",
                "stats": {"calls": 3, "errors": 0, "avg_hook_us": 1.5}}]
    down = {"error": "worker 1 did not answer (ConnectionRefusedError); it may be restarting"}
    status, _, body, _ = merge_answers([_answer(0, 200, plugins), _answer(1, 502, down)])
    assert status == 502
    lines = plugins_table(json.loads(body)).splitlines()
    assert lines[0].split() == ["WORKER", "NAME", "VERSION", "KIND", "STYLE", "STATE", "CALLS", "ERRORS", "AVG_US"]
    assert lines[1].split() == ["0/100", "stamp", "1", "middleware", "hook", "active", "3", "0", "1.50"]
    assert lines[2].startswith("1/101") and "did not answer" in lines[2]


def test_a_non_json_answer_is_the_first_workers_as_it_is() -> None:
    page = Answer(0, 100, 200, "text/html; charset=utf-8", b"<html>")
    assert merge_answers([page, Answer(1, 101, 200, "text/html; charset=utf-8", b"<html>")])[:3] == \
        (200, "text/html; charset=utf-8", b"<html>")


def test_health_per_worker() -> None:
    health = {"status": "ok", "manager": "running", "chain_generation": 1, "inflight": 0,
              "plugins": {"stamp": {"state": "active", "version": "1", "calls": 1, "errors": 0, "error": None}}}
    failed = dict(health, status="failed", plugins={"stamp": {"state": "failed", "version": "1", "calls": 0,
                                                              "errors": 1, "error": "boom"}})
    _, _, body, _ = merge_answers([_answer(0, 200, health), _answer(1, 503, failed)])
    text = health_table(json.loads(body))
    assert "worker 0/100: status ok" in text and "worker 1/101: status failed" in text
    assert any(line.split()[:3] == ["1/101", "stamp", "failed"] and line.endswith("boom")
               for line in text.splitlines())


def test_the_dashboard_snapshots_of_the_workers_sum_their_counters() -> None:
    from covet_pipe.admin.summed import sum_snapshots

    def snap(calls: int, errors: int, p99: float, state: str, status: str, at: float) -> dict:
        stats = {"calls": calls, "errors": errors, "inflight": 1, "short_circuits": 0, "skipped_open": 0,
                 "avg_hook_us": calls / 10, "p50_hook_us": p99 / 2, "p99_hook_us": p99}
        return {"at": at, "plugins": [{"name": "stamp", "version": "1", "state": state, "stats": stats}],
                "chain": {"middleware": [{"name": "stamp"}]},
                "health": {"status": status, "inflight": 1, "plugins": {"stamp": {"state": state, **stats}}},
                "reloads": [{"name": "stamp", "ok": True, "at": at}], "errors": [],
                "reload_counts": {"stamp": {"ok": 1, "failed": 0}}}

    merged = sum_snapshots([(0, 10, snap(30, 1, 8.0, "active", "ok", 100.0)),
                            (1, 11, snap(10, 2, 20.0, "failed", "degraded", 200.0)),
                            (2, None, None)])
    stats = merged["plugins"][0]["stats"]
    assert (stats["calls"], stats["errors"], stats["inflight"]) == (40, 3, 2)
    assert stats["avg_hook_us"] == (3.0 * 30 + 1.0 * 10) / 40      # weighted by calls
    assert (stats["p50_hook_us"], stats["p99_hook_us"]) == (10.0, 20.0)     # the slowest worker's
    assert merged["plugins"][0]["state"] == "failed" and merged["health"]["status"] == "degraded"
    assert merged["health"]["plugins"]["stamp"]["calls"] == 40 and merged["health"]["inflight"] == 2
    assert [(r["worker"], r["at"]) for r in merged["reloads"]] == [(1, 200.0), (0, 100.0)]
    assert merged["reload_counts"] == {"stamp": {"ok": 2, "failed": 0}} and merged["at"] == 200.0
    assert merged["workers"] == [{"worker": 0, "pid": 10, "answered": True},
                                 {"worker": 1, "pid": 11, "answered": True},
                                 {"worker": 2, "pid": None, "answered": False}]
    with pytest.raises(ValueError):
        sum_snapshots([(0, None, None)])
