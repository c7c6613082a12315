"""Bad plugins are refused with a clear message, and the plugins already there keep serving."""

from __future__ import annotations

import httpx
import pytest

from covet_pipe import (
    AuthPlugin,
    MiddlewarePlugin,
    PluginError,
    PluginManager,
    PluginValidationError,
    wrap,
)
from tests.conftest import text_app


class Good(MiddlewarePlugin):
    name = "good"
    version = "1.0.0"

    def process_request(self, request, ctx):
        request.headers.set("x-seen", "good")

    def process_response(self, response, ctx):
        response.headers.set("x-good", "1")


def make(name="bad", version="1.0.0", **attrs):
    """A middleware plugin class named BadPlugin with these class attributes."""
    return type("BadPlugin", (MiddlewarePlugin,), {"name": name, "version": version, **attrs})


class NoName(MiddlewarePlugin):
    version = "1.0.0"


class SyncCallNext(MiddlewarePlugin):
    name = "sync_call_next"
    version = "1.0.0"

    def process_request(self, request, call_next):
        return call_next(request)


class NotAPlugin:
    name = "imposter"
    version = "1.0.0"


CASES = {
    "no-name": (NoName, r"plugin class NoName has no name: set a class attribute such as name = \"no_name\""),
    "bad-name": (make(name="bad name!"), r"plugin name 'bad name!' of BadPlugin is not valid: use letters, "
                                         r"digits, '_', '-' and '\.'"),
    "duplicate-name": (make(name="good"), r"a plugin named 'good' is already registered \(registered\); "
                                          r"plugin names are unique: rename BadPlugin or unload the other "
                                          r"first"),
    "no-version": (make(version=None), r"plugin 'bad' has no version: set version = \"1\.0\.0\" \(PEP 440\)"),
    "bad-version": (make(version="one.two"), r"plugin 'bad' has version 'one\.two', which is not a PEP 440 "
                                             r"version; use a version such as \"1\.2\.0\""),
    "bad-dependency": (make(dependencies=["clock >>> 1"]),
                       r"plugin 'bad': dependency 'clock >>> 1' is not a valid constraint; write it like "
                       r"\"jwt_handler>=1\.0,<2\""),
    "dependency-not-a-list": (make(dependencies="clock>=1"),
                              r"plugin 'bad': dependencies must be a list of strings, got the string "
                              r"'clock>=1'; write dependencies = \['clock>=1'\]"),
    "bad-priority": (make(priority="high"), r"plugin 'bad': priority must be an int \(lower runs first\), "
                                            r"got 'high'"),
    "bool-priority": (make(priority=True), r"plugin 'bad': priority must be an int \(lower runs first\), "
                                           r"got True"),
    "bad-failure-policy": (make(failure_policy="ignore"),
                           r"plugin 'bad': failure_policy must be 'closed' \(answer 500\) or 'open' "
                           r"\(skip the plugin\), got 'ignore'"),
    "sync-call-next": (SyncCallNext, r"plugin 'sync_call_next' uses the call_next style, so process_request "
                                     r"must be 'async def process_request\(self, request, call_next\)'"),
    "not-a-plugin": (NotAPlugin, r"NotAPlugin is not a plugin: derive it from covet_pipe\.Plugin"),
}


@pytest.mark.parametrize("cls, message", list(CASES.values()), ids=list(CASES))
def test_register_bad_plugin_raises_a_clear_error_and_the_rest_keep_serving(serve, cls, message):
    manager = PluginManager()
    manager.register(Good())
    with pytest.raises(PluginValidationError, match=f"^{message}"):
        manager.register(cls())
    assert [p["name"] for p in manager.list_plugins()] == ["good"]
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/after")
    assert (r.status_code, r.text, r.headers["x-good"]) == (200, "GET /after seen=good", "1")


class BrokenAuth(AuthPlugin):
    name = "broken_auth"
    version = "1.0.0"

    async def initialize(self, ctx):
        raise ConnectionError("identity provider unreachable")

    async def authenticate(self, credentials):
        return None

    async def authorize(self, user, resource, action):
        return False


def test_exception_in_initialize_is_a_clear_error_and_the_rest_keep_serving(serve):
    manager = PluginManager()
    manager.register(Good())
    manager.register(BrokenAuth())
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/after")
        with pytest.raises(PluginError, match=r"^auth provider 'broken_auth' failed: initialize\(\) raised "
                                              r"ConnectionError: identity provider unreachable$"):
            manager.get_auth_provider("broken_auth")
        plugins = {p["name"]: p for p in manager.list_plugins()}
    assert (r.status_code, r.text, r.headers["x-good"]) == (200, "GET /after seen=good", "1")
    assert plugins["broken_auth"]["state"] == "failed"
    assert plugins["broken_auth"]["error"] == ("initialize() raised ConnectionError: "
                                               "identity provider unreachable")
    assert plugins["good"]["state"] == "active"


def test_bad_register_arguments_are_refused():
    manager = PluginManager()
    with pytest.raises(PluginValidationError, match=r"priority must be an int \(lower runs first\), got '1'"):
        manager.register(Good(), priority="1")
    with pytest.raises(PluginValidationError, match=r"failure_policy must be 'closed' .* got 'sometimes'"):
        manager.register(Good(), failure_policy="sometimes")
    assert manager.list_plugins() == []
    assert manager.register(Good()) == "good"       # the name was not taken by the failed attempts
