"""Load, unload, one plugin, its sandbox policy, the chain per protocol, recent errors and reload history,
through a real uvicorn on 127.0.0.1 with the admin app mounted beside the served app.

Each new endpoint with no token, a wrong token and the right one; the literal paths win over
``/_plugins/{name}``; a bad load body is a 400 that says what to send; a file that does not load is a
422 naming it; a name taken is a 409; unloading what others depend on is a 409 naming them, and
``?cascade=1`` unloads them all; a plugin's error and a reload (good and failed) show in their rings.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.admin._apps import admin_beside_app
from tests._process import free_port, start_until_ready, stop

TOKEN = "t0ken-for-the-admin-manage-tests-0123456789"

PLUGINS = {
    "stamp.py": '''
from covet_pipe import MiddlewarePlugin

class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "{version}"
    priority = 100
    protocols = ("http", "websocket")

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "{version}")

plugin = Stamp()
''',
    "base.py": '''
from covet_pipe import MiddlewarePlugin

class Base(MiddlewarePlugin):
    name = "base"
    version = "1.2.0"
    priority = 50

    def process_request(self, request, ctx):
        return None

plugin = Base()
''',
    "needs_base.py": '''
from covet_pipe import MiddlewarePlugin

class NeedsBase(MiddlewarePlugin):
    name = "needs_base"
    version = "0.1.0"
    priority = 200
    dependencies = ["base>=1"]

    def process_request(self, request, ctx):
        return None

plugin = NeedsBase()
''',
    "boom.py": '''
from covet_pipe import MiddlewarePlugin

class Boom(MiddlewarePlugin):
    name = "boom"
    version = "1.0.0"
    priority = 300

    def process_request(self, request, ctx):
        if request.path.startswith("/boom"):
            raise ValueError("boom at " + request.path)
        return None

plugin = Boom()
''',
}

APP = admin_beside_app(TOKEN, entry_points=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("manage")
    (folder / "plugins").mkdir()
    for name, text in PLUGINS.items():
        (folder / "plugins" / name).write_text(text.format(version="1.0.0"))
    (folder / "extra").mkdir()
    (folder / "adminapp.py").write_text(APP)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "adminapp:app", "--host", "127.0.0.1",
                              "--port", str(port)], port, folder, folder / "server.log")
    try:
        yield f"http://127.0.0.1:{port}", folder
    finally:
        stop(proc)


def call(base: str, method: str, path: str, body: Any = None, token: str | None = TOKEN,
         raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else
                                        (b"" if method == "POST" else None))
    req = urllib.request.Request(base + path, method=method, data=data)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def get(base: str, path: str) -> urllib.request.Request:
    return urllib.request.Request(base + path)


ENDPOINTS = [("GET", "/_plugins/stamp"), ("GET", "/_plugins/stamp/policy"), ("GET", "/_plugins/errors"),
             ("GET", "/_plugins/reloads"), ("GET", "/_plugins/openapi.json"), ("POST", "/_plugins/load"),
             ("DELETE", "/_plugins/stamp")]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_each_new_endpoint_refuses_no_token_and_a_wrong_one(server: tuple[str, Path], method: str,
                                                            path: str) -> None:
    import httpx

    # each endpoint from an address of its own (127.0.0.0/8 is all loopback): the failures made here
    # stay below the per-address limit, so the other tests keep 127.0.0.1's record clean
    source = f"127.0.0.{10 + ENDPOINTS.index((method, path))}"
    with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=30) as client:
        none = client.request(method, server[0] + path)
        wrong = client.request(method, server[0] + path, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert (none.status_code, none.json(), none.headers["www-authenticate"]) == (401, {"error": "unauthorized"}, "Bearer")
    assert (wrong.status_code, wrong.json()) == (403, {"error": "forbidden"})


def test_one_plugin_answers_its_record_and_an_unknown_one_404(server: tuple[str, Path]) -> None:
    base = server[0]
    status, _, info = call(base, "GET", "/_plugins/stamp")
    assert status == 200
    assert (info["name"], info["version"], info["state"], info["sandboxed"]) == ("stamp", "1.0.0", "active", False)
    assert info["protocols"] == ["http", "websocket"] and "calls" in info["stats"]
    assert info["reloads"] == {"ok": 0, "failed": 0}
    status, _, body = call(base, "GET", "/_plugins/nope")
    assert status == 404 and body["plugins"] == ["base", "boom", "needs_base", "stamp"]


def test_the_literal_paths_win_over_a_plugin_name(server: tuple[str, Path]) -> None:
    base = server[0]
    status, _, health = call(base, "GET", "/_plugins/health")
    assert status == 200 and set(health["plugins"]) == {"base", "boom", "needs_base", "stamp"}
    status, headers, body = call(base, "DELETE", "/_plugins/health")
    assert status == 405 and headers["allow"] == "GET" and "use GET" in body["error"]
    status, headers, _ = call(base, "PATCH", "/_plugins/stamp")
    assert status == 405 and headers["allow"] == "DELETE, GET"


def test_the_chain_lists_each_protocols_middleware_in_order(server: tuple[str, Path]) -> None:
    status, _, chain = call(server[0], "GET", "/_plugins/chain")
    assert status == 200
    assert [e["name"] for e in chain["middleware"]] == ["base", "stamp", "needs_base", "boom"]
    assert chain["by_protocol"]["http"] == ["base", "stamp", "needs_base", "boom"]
    assert chain["by_protocol"]["websocket"] == ["stamp"]
    assert chain["middleware"][1]["protocols"] == ["http", "websocket"]


def test_an_in_process_plugins_policy_says_it_is_not_sandboxed(server: tuple[str, Path]) -> None:
    status, _, policy = call(server[0], "GET", "/_plugins/stamp/policy")
    assert status == 200 and policy["plugin"] == "stamp" and policy["sandboxed"] is False
    assert "in-process" in policy["note"] and isinstance(policy["kernel"]["landlock"], bool)
    assert call(server[0], "GET", "/_plugins/nope/policy")[0] == 404


@pytest.mark.parametrize(("raw", "says"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "a JSON object"),
    (b"{}", "'path' must be a non-empty string"),
    (b'{"path": 3}', "'path' must be a non-empty string"),
    (b'{"path": "x.py", "sandbox": "yes"}', "'sandbox' must be true or false"),
    (b'{"path": "x.py", "where": 1}', "unknown field 'where'"),
], ids=["not-json", "not-object", "no-path", "path-number", "sandbox-string", "unknown-field"])
def test_a_bad_load_body_is_400_saying_what_to_send(server: tuple[str, Path], raw: bytes, says: str) -> None:
    status, _, body = call(server[0], "POST", "/_plugins/load", raw=raw)
    assert status == 400 and says in body["error"] and body["example"]["path"]


def test_a_file_that_does_not_load_is_422_naming_it(server: tuple[str, Path]) -> None:
    base, folder = server
    broken = folder / "extra" / "broken.py"
    broken.write_text("this is not python (\n")
    status, _, body = call(base, "POST", "/_plugins/load", {"path": str(broken)})
    assert status == 422 and str(broken) in body["error"] and body["path"] == str(broken)
    status, _, body = call(base, "POST", "/_plugins/load", {"path": str(folder / "extra" / "missing.py")})
    assert status == 422 and "missing.py" in body["error"]
    assert sorted(p["name"] for p in call(base, "GET", "/_plugins")[2]) == ["base", "boom", "needs_base", "stamp"]


def test_load_serves_the_new_plugin_and_a_second_load_is_409(server: tuple[str, Path]) -> None:
    base, folder = server
    extra = folder / "extra" / "tagger.py"
    extra.write_text(PLUGINS["stamp.py"].replace("Stamp", "Tagger").replace('"stamp"', '"tagger"')
                     .replace("x-stamp", "x-tagger").format(version="3.0.0"))
    status, _, body = call(base, "POST", "/_plugins/load", {"path": str(extra), "sandbox": False})
    assert status == 201 and body["loaded"] == ["tagger"] and body["plugins"][0]["state"] == "active"
    with urllib.request.urlopen(get(base, "/"), timeout=10) as r:
        assert r.headers["x-tagger"] == "3.0.0"
    status, _, body = call(base, "POST", "/_plugins/load", {"path": str(extra)})
    assert status == 409 and body["plugin"] == "tagger" and "already loaded" in body["error"]
    status, _, body = call(base, "DELETE", "/_plugins/tagger")
    assert (status, body) == (200, {"unloaded": ["tagger"]})
    with urllib.request.urlopen(get(base, "/"), timeout=10) as r:
        assert r.headers.get("x-tagger") is None


def test_unloading_what_others_need_is_409_naming_them_and_cascade_unloads_all(server: tuple[str, Path]) -> None:
    base, folder = server
    status, _, body = call(base, "DELETE", "/_plugins/base?cascade=maybe")
    assert status == 400 and "cascade" in body["error"]
    status, _, body = call(base, "DELETE", "/_plugins/base")
    assert status == 409 and body["dependents"] == ["needs_base"] and "cascade=1" in body["error"]
    assert "base" in [p["name"] for p in call(base, "GET", "/_plugins")[2]]
    status, _, body = call(base, "DELETE", "/_plugins/base?cascade=1")
    assert status == 200 and body["unloaded"] == ["needs_base", "base"]
    assert call(base, "GET", "/_plugins/base")[0] == 404
    for name in ("base.py", "needs_base.py"):           # put them back for the tests after this one
        status, _, body = call(base, "POST", "/_plugins/load", {"path": str(folder / "plugins" / name)})
        assert status == 201, body


def test_a_plugins_error_shows_in_recent_errors_printable(server: tuple[str, Path]) -> None:
    base = server[0]
    try:
        urllib.request.urlopen(get(base, "/boom%0Aforged"), timeout=10)
        raise AssertionError("the failing plugin's request did not fail")
    except urllib.error.HTTPError as e:
        assert e.code == 500 and b"boom at" not in e.read()     # no detail reaches the client
    status, _, body = call(base, "GET", "/_plugins/errors")
    assert status == 200
    newest = body["errors"][0]
    assert (newest["plugin"], newest["hook"]) == ("boom", "process_request")
    assert newest["error"] == "ValueError: boom at /boom\\nforged" and newest["at"] > 0


def test_reloads_good_and_failed_show_in_the_history_and_counts(server: tuple[str, Path]) -> None:
    base, folder = server
    stamp = folder / "plugins" / "stamp.py"
    stamp.write_text(PLUGINS["stamp.py"].format(version="2.0.0"))
    assert call(base, "POST", "/_plugins/stamp/reload")[0] == 200
    stamp.write_text("this is not python (\n")
    assert call(base, "POST", "/_plugins/stamp/reload")[0] == 409
    stamp.write_text(PLUGINS["stamp.py"].format(version="2.0.0"))
    status, _, body = call(base, "GET", "/_plugins/reloads")
    assert status == 200
    failed, ok = body["reloads"][:2]
    assert (ok["name"], ok["old_version"], ok["new_version"], ok["ok"], ok["error"]) == \
        ("stamp", "1.0.0", "2.0.0", True, None)
    assert ok["duration_s"] >= 0 and ok["at"] <= failed["at"]
    assert (failed["name"], failed["old_version"], failed["new_version"], failed["ok"]) == \
        ("stamp", "2.0.0", None, False)
    assert "stamp.py" in failed["error"]
    assert body["counts"]["stamp"] == {"ok": 1, "failed": 1}
    assert call(base, "GET", "/_plugins/stamp")[2]["reloads"] == {"ok": 1, "failed": 1}


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")
def test_a_sandboxed_plugins_policy_lists_its_grants_limits_and_layers(server: tuple[str, Path]) -> None:
    base, folder = server
    guarded = folder / "extra" / "guarded.py"
    guarded.write_text(PLUGINS["base.py"].replace("Base", "Guarded").replace('"base"', '"guarded"'))
    status, _, body = call(base, "POST", "/_plugins/load", {"path": str(guarded), "sandbox": True})
    assert status == 201 and body["loaded"] == ["guarded"], body
    try:
        assert call(base, "GET", "/_plugins/guarded")[2]["sandboxed"] is True
        status, _, policy = call(base, "GET", "/_plugins/guarded/policy")
        assert status == 200 and policy["sandboxed"] is True and policy["state"] == "serving"
        assert str(folder / "extra") in policy["permissions"]["read_paths"]
        assert policy["permissions"]["networks"] == [] and policy["syscalls"]["added"] == []
        assert {"read", "futex"} <= set(policy["syscalls"]["baseline"]) and "socket" in policy["syscalls"]["conditional"]
        assert policy["limits"]["pids_max"] == 64 and policy["limits"]["open_files"] == 64
        assert {"seccomp", "landlock"} <= set(policy["require"])
        assert policy["layers"]["seccomp"] and policy["layers"]["landlock"] and policy["kernel"]["landlock"] is True
    finally:
        assert call(base, "DELETE", "/_plugins/guarded")[0] == 200


@pytest.mark.parametrize("path", ["~no-such-user-here/p.py", "0" * 300, "a\x00b.py", "\ud800.py", " "],
                         ids=["unknown-home", "name-too-long", "nul", "lone-surrogate", "blank"])
def test_a_path_that_cannot_be_a_file_is_422_not_500(server: tuple[str, Path], path: str) -> None:
    # found by make admin-fuzz: these reached the client as 500s before
    raw = json.dumps({"path": path}).encode()
    status, _, body = call(server[0], "POST", "/_plugins/load", raw=raw)
    assert status == 422 and "was not loaded" in body["error"] and body["path"] == path


def test_a_plugin_named_like_an_endpoint_reloads_but_its_name_path_stays_the_endpoints(
        server: tuple[str, Path]) -> None:
    # the tests after this one list no plugins: a plugin named "health" cannot be unloaded through the API
    base, folder = server
    named = folder / "extra" / "health.py"
    named.write_text(PLUGINS["base.py"].replace("Base", "Health").replace('"base"', '"health"'))
    assert call(base, "POST", "/_plugins/load", {"path": str(named)})[0] == 201
    assert "health" in [p["name"] for p in call(base, "GET", "/_plugins")[2]]
    status, _, body = call(base, "POST", "/_plugins/health/reload")
    assert (status, body) == (200, {"reloaded": "health", "version": "1.2.0"})
    status, _, body = call(base, "GET", "/_plugins/health")
    assert status == 200 and body["status"] == "ok" and "health" in body["plugins"]     # the endpoint
    assert call(base, "DELETE", "/_plugins/health")[0] == 405


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox layers are Linux kernel features")
def test_a_sandboxed_plugins_helper_that_ends_is_a_recent_error(server: tuple[str, Path]) -> None:
    base, folder = server
    crashy = folder / "extra" / "crashy.py"
    crashy.write_text('''
import os
from covet_pipe import MiddlewarePlugin

class Crashy(MiddlewarePlugin):
    name = "crashy"
    version = "1.0.0"

    def process_request(self, request, ctx):
        if request.path == "/crash":
            os._exit(3)
        return None

plugin = Crashy()
''')
    assert call(base, "POST", "/_plugins/load", {"path": str(crashy), "sandbox": True})[0] == 201
    try:
        try:
            urllib.request.urlopen(get(base, "/crash"), timeout=30)
            raise AssertionError("the request whose helper ended did not fail")
        except urllib.error.HTTPError as e:
            assert e.code == 503
        errors = [e for e in call(base, "GET", "/_plugins/errors")[2]["errors"] if e["plugin"] == "crashy"]
        assert errors and {e["hook"] for e in errors} == {"sandbox"}
        assert any("unavailable" in e["error"] or "ended" in e["error"] for e in errors), errors
    finally:
        assert call(base, "DELETE", "/_plugins/crashy")[0] == 200
