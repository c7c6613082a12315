"""The examples loaded by the real loader and served by uvicorn, beside a Python plugin."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.native._abi import ROOT

KEY = {"api_key": {"key": "s3cret", "exempt_prefix": "/public"}}


def _serve(built, tmp_path, settings):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for so in built.values():
        shutil.copy(so, plugins)
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-m", "tests.native._serve_examples",
                           str(plugins), json.dumps(settings)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"the server process failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    return _serve(built, tmp_path_factory.mktemp("served"), KEY)


def test_served_examples_load_from_plugin_path(served):
    assert served["loaded"] == ["api_key", "header_rewrite", "path_counter"]
    assert served["failed"] == {}


def test_served_chain_interleaves_native_and_python_by_priority(served):
    assert [tuple(e) for e in served["chain"]] == [("api_key", "native"), ("audit", "middleware"),
                                                   ("header_rewrite", "native"), ("path_counter", "native")]
    # audit (150) ran before header_rewrite (300) in the request phase, after it in the response phase
    assert served["responses"]["first"]["headers"]["x-audit"] == \
        "request x-native=-; response x-powered-by=covet-pipe-native"


@pytest.mark.parametrize("label", ["no_key", "wrong_key"])
def test_served_api_key_rejects_with_401_before_the_app(served, label):
    r = served["responses"][label]
    assert r["status"] == 401
    assert r["headers"]["content-type"] == "application/json"
    assert json.loads(r["body"]) == {"error": "missing or wrong API key"}
    # the plugins after api_key never ran, so neither did their response hooks
    assert "x-powered-by" not in r["headers"] and "x-audit" not in r["headers"]


def test_served_right_key_reaches_app_with_native_request_header(served):
    r = served["responses"]["first"]
    assert r["status"] == 200
    assert json.loads(r["body"])["x-native"] == "1"


def test_served_header_rewrite_edits_response_headers(served):
    headers = served["responses"]["first"]["headers"]
    assert headers["x-powered-by"] == "covet-pipe-native"
    assert "server" not in headers   # the app's "server: the-app" was removed


def test_served_path_counter_counts_per_path(served):
    counts = [served["responses"][k]["headers"]["x-path-count"] for k in ("first", "second", "other_path")]
    assert counts == ["1", "2", "1"]


def test_served_exempt_prefix_needs_no_key(served):
    assert served["responses"]["public"]["status"] == 200


def test_served_health_and_list_show_native_plugins(served):
    assert served["health"]["status"] == "ok"
    for name in ("api_key", "header_rewrite", "path_counter"):
        assert served["health"]["plugins"][name]["state"] == "active"
        assert served["list"][name]["source"] == "native"
    assert "native (cython)" in served["list"]["path_counter"]["metadata"]["description"]


def test_served_api_key_without_key_setting_fails_closed_with_503(built, tmp_path):
    out = _serve(built, tmp_path, {})
    plugins = out["health"]["plugins"]
    assert plugins["api_key"]["state"] == "failed"
    assert "api_key needs a 'key' setting" in plugins["api_key"]["error"]
    assert plugins["header_rewrite"]["state"] == plugins["path_counter"]["state"] == "active"
    assert out["health"]["status"] == "degraded"
    # a failed fail-closed guard never leaves its paths open: 503, and the app is not reached
    for label in ("no_key", "first", "public"):
        assert out["responses"][label]["status"] == 503
