"""The example plugins' behaviour, driven through a host written in Python from covet_plugin.h."""

from __future__ import annotations

import pytest

from tests.native._abi import CONST, Plugin, Request, c_descriptor, capsule_descriptor, ffi, import_extension

OK, RESPOND, ERROR = CONST["COVET_OK"], CONST["COVET_RESPOND"], CONST["COVET_ERROR"]


@pytest.fixture
def load(built):
    """load(name, config) -> an initialised Plugin; shut down at the end of the test."""
    started: list[Plugin] = []
    keep = []

    def _load(name: str, config: dict[str, str] | None = None, *, init: bool = True) -> Plugin:
        if name == "path_counter":
            module = import_extension(built[name])
            keep.append(module)
            _, d = capsule_descriptor(module)
        else:
            lib, d = c_descriptor(built[name])
            keep.append(lib)
        plugin = Plugin(d, config)
        if init:
            assert plugin.init() == OK, plugin.errors
            started.append(plugin)
        return plugin

    yield _load
    for plugin in started:
        plugin.shutdown()


# ---- header_rewrite ---------------------------------------------------------------------------

def test_header_rewrite_request_sets_x_native_replacing_client_value(load):
    plugin = load("header_rewrite")
    req = Request("/", [(b"x-native", b"forged"), (b"accept", b"*/*")])
    assert plugin.request(req) == OK
    assert req.getall(b"x-native") == [b"1"]
    assert req.header(b"accept") == b"*/*"


def test_header_rewrite_response_sets_powered_by_and_removes_server(load):
    plugin = load("header_rewrite")
    req = Request()
    assert plugin.request(req) == OK
    assert plugin.response(req, 200, [(b"server", b"uvicorn"), (b"x-powered-by", b"app"),
                                      (b"content-type", b"text/plain")]) == OK
    assert req.getall(b"x-powered-by") == [b"covet-pipe-native"]
    assert req.header(b"server") is None
    assert req.header(b"content-type") == b"text/plain"


def test_header_rewrite_response_without_server_header_is_ok(load):
    plugin = load("header_rewrite")
    req = Request()
    assert plugin.response(req, 204, []) == OK
    assert req.headers == [(b"x-powered-by", b"covet-pipe-native")]


# ---- api_key ----------------------------------------------------------------------------------

def test_api_key_init_without_key_setting_fails_and_says_how(load):
    plugin = load("api_key", {}, init=False)
    assert plugin.init() == ERROR
    assert len(plugin.errors) == 1
    assert plugin.errors[0].startswith("api_key needs a 'key' setting")
    assert 'plugin_settings={"api_key": {"key": "..."}}' in plugin.errors[0]


def test_api_key_init_with_empty_key_fails(load):
    plugin = load("api_key", {"key": ""}, init=False)
    assert plugin.init() == ERROR
    assert "needs a 'key' setting" in plugin.errors[0]


def test_api_key_right_key_continues(load):
    plugin = load("api_key", {"key": "s3cret"})
    req = Request("/private", [(b"x-api-key", b"s3cret")])
    assert plugin.request(req) == OK
    assert req.response is None


@pytest.mark.parametrize("sent", [None, b"", b"s3cre", b"s3cret!", b"S3CRET", b"x" * 6],
                         ids=["missing", "empty", "prefix", "longer", "case", "same-length"])
def test_api_key_wrong_or_missing_key_answers_401(load, sent):
    plugin = load("api_key", {"key": "s3cret"})
    req = Request("/private", [] if sent is None else [(b"x-api-key", sent)])
    assert plugin.request(req) == RESPOND
    assert req.response == (401, b"application/json", b'{"error":"missing or wrong API key"}')
    assert plugin.errors == []


@pytest.mark.parametrize(("path", "needs_key"), [
    ("/public", False), ("/public/logo.png", False), ("/publicity", True), ("/", True), ("/pub", True),
])
def test_api_key_exempt_prefix_skips_paths_under_it(load, path, needs_key):
    plugin = load("api_key", {"key": "s3cret", "exempt_prefix": "/public"})
    req = Request(path)
    assert plugin.request(req) == (RESPOND if needs_key else OK)


def test_api_key_keeps_its_own_copy_of_config(load):
    plugin = load("api_key", {"key": "s3cret"})
    for buf in plugin.strings:   # scribble over the host's config strings: the plugin must not need them
        ffi.memmove(buf, b"X" * (len(buf) - 1), len(buf) - 1)
    plugin.config.clear()
    assert plugin.request(Request("/", [(b"x-api-key", b"s3cret")])) == OK


# ---- path_counter (Cython) --------------------------------------------------------------------

def _round_trip(plugin: Plugin, path: str) -> Request:
    req = Request(path)
    assert plugin.request(req) == OK
    assert plugin.response(req, 200, [(b"content-type", b"text/plain")]) == OK
    plugin.done(req)
    return req


def test_path_counter_counts_per_path(load):
    plugin = load("path_counter")
    counts = [_round_trip(plugin, p).header(b"x-path-count") for p in ("/a", "/a", "/b", "/a", "/b")]
    assert counts == [b"1", b"2", b"1", b"3", b"2"]


def test_path_counter_frees_request_data_when_done(load):
    plugin = load("path_counter")
    req = Request("/x")
    assert plugin.request(req) == OK
    assert req.data != ffi.NULL
    plugin.done(req)               # e.g. a later plugin answered: on_response never ran
    assert req.data == ffi.NULL


def test_path_counter_instances_count_separately(load):
    first, second = load("path_counter"), load("path_counter")
    _round_trip(first, "/a")
    assert _round_trip(second, "/a").header(b"x-path-count") == b"1"
