"""`covet-pipe serve --workers 2 --admin`: the dashboard's browser session through the supervisor's port.

The supervisor owns the sessions: it serves the page, its files and ``/_plugins/session`` itself,
accepts the ``covet_pipe_admin`` cookie and forwards to the workers with the bearer token. A cookie
lists; a cookie's reload without ``X-Covet-Pipe: 1`` is 403 and reaches no worker; with it, both
workers serve the new version; the snapshot and the events stream come through; a closed session
is refused.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from tests._process import stop
from tests.test_cli_admin import TOKEN, Server, make_folder, write_plugin
from tests.test_cli_admin_workers import _pids_by_version


def _call(server: Server, method: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.admin, timeout=60)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def _first_event(server: Server, cookie: str) -> dict[str, object]:
    """The first snapshot event of ``GET /_plugins/events`` with *cookie* (bounded reads)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.admin, timeout=60)
    try:
        conn.request("GET", "/_plugins/events", headers={"Cookie": cookie, "Accept": "text/event-stream"})
        answer = conn.getresponse()
        assert answer.status == 200 and answer.getheader("content-type", "").startswith("text/event-stream")
        for _ in range(50):
            line = answer.fp.readline()
            if line.startswith(b"data: "):
                document: dict[str, object] = json.loads(line[6:])
                return document
        raise AssertionError("no snapshot event in 50 lines")
    finally:
        conn.close()


def test_a_browser_session_through_the_supervisor_reaches_every_worker(tmp_path: Path) -> None:
    server = Server(make_folder(tmp_path), workers=2)
    try:
        status, headers, page = _call(server, "GET", "/_plugins/dashboard")
        assert status == 200 and b"<html" in page.lower() and "default-src 'self'" in headers["content-security-policy"]
        status, headers, script = _call(server, "GET", "/_plugins/static/dashboard.js")
        assert status == 200 and headers["content-type"].startswith("text/javascript") and script
        assert _call(server, "GET", "/_plugins")[0] == 401             # no credentials
        assert _call(server, "GET", "/_plugins", Cookie="covet_pipe_admin=made-up")[0] == 401

        status, headers, body = _call(server, "POST", "/_plugins/session", Authorization=f"Bearer {TOKEN}")
        assert status == 200 and json.loads(body)["open"] is True, body
        set_cookie = headers["set-cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/_plugins" in set_cookie
        cookie = set_cookie.split(";")[0]
        assert json.loads(_call(server, "GET", "/_plugins/session", Cookie=cookie)[2])["open"] is True

        status, headers, body = _call(server, "GET", "/_plugins", Cookie=cookie)
        assert status == 200 and headers["x-covet-pipe-workers"] == "2", body
        listing = json.loads(body)
        documents = [w["document"] for w in listing["workers"]] if "workers" in listing else [listing]
        assert all([p["name"] for p in d] == ["stamp"] for d in documents), listing

        before = _pids_by_version(server.port, 2)
        assert list(before) == ["1.0.0"] and len(before["1.0.0"]) == 2, before
        write_plugin(server.folder, "2.0.0")
        status, _, body = _call(server, "POST", "/_plugins/stamp/reload", Cookie=cookie)
        assert status == 403 and json.loads(body) == {"error": "forbidden"}
        assert list(_pids_by_version(server.port, 2)) == ["1.0.0"]      # no worker reloaded
        status, _, body = _call(server, "POST", "/_plugins/stamp/reload", Cookie=cookie, X_Covet_Pipe="1")
        assert status == 200 and json.loads(body) == {"reloaded": "stamp", "version": "2.0.0"}, body
        after = _pids_by_version(server.port, 2)
        assert list(after) == ["2.0.0"] and after["2.0.0"] == before["1.0.0"], after

        status, headers, body = _call(server, "GET", "/_plugins/dashboard/snapshot", Cookie=cookie)
        snap = json.loads(body)
        assert status == 200 and headers["x-covet-pipe-workers"] == "2", body
        assert [p["version"] for p in snap["plugins"]] == ["2.0.0"] and snap["reloads"][0]["new_version"] == "2.0.0"
        # the counters are the workers' sum (no request came in between: the admin port is not the app's)
        assert [w["answered"] for w in snap["workers"]] == [True, True], snap["workers"]
        assert {r["worker"] for r in snap["reloads"]} == {0, 1}      # each worker's reload, in one history
        listing = json.loads(_call(server, "GET", "/_plugins", Cookie=cookie)[2])
        per_worker = [w["document"] for w in listing["workers"]] if "workers" in listing else [listing] * 2
        calls = [d[0]["stats"]["calls"] for d in per_worker]
        assert all(calls) and snap["plugins"][0]["stats"]["calls"] == sum(calls), (calls, snap["plugins"])
        assert snap["health"]["plugins"]["stamp"]["calls"] == sum(calls)
        event = _first_event(server, cookie)
        assert [p["version"] for p in event["plugins"]] == ["2.0.0"], event     # type: ignore[attr-defined]

        status, headers, _ = _call(server, "DELETE", "/_plugins/session", Cookie=cookie, X_Covet_Pipe="1")
        assert status == 200 and "Max-Age=0" in headers["set-cookie"]
        assert _call(server, "GET", "/_plugins", Cookie=cookie)[0] == 401   # the session is over
        assert _call(server, "GET", "/_plugins", Authorization=f"Bearer {TOKEN}")[0] == 200
    finally:
        code = stop(server.proc)
    log = server.log.read_text()
    assert code == 0 and "Traceback" not in log, log
