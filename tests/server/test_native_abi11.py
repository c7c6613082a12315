"""ABI 1.1 through covet-pipe's own listener: a C plugin reads the client address (the PROXY
layer's real client when the peer is trusted) and answers 429 with a Retry-After header."""

from __future__ import annotations

import json
from typing import Any

from covet_pipe import PluginConfig, PluginManager
from tests._helpers import echo_app
from tests.native._cplugins import cc
from tests.server.conftest import exchange

REQ = b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def _seen(reply: Any) -> str:
    return dict(json.loads(reply.body)["headers"]).get("x-native-client", "")


def test_get_client_and_respond_header(covet_server: Any) -> None:
    manager = PluginManager(PluginConfig(entry_points=False,
                                         plugin_settings={"client_gate": {"blocked": "203.0.113.7"}}))
    so = cc("client_gate.c", "client_gate.so")
    with covet_server(echo_app, manager, trusted_proxies=["127.0.0.1"]) as s:
        s.call(manager.load_plugin_from_path(str(so)))
        (plain,), _ = exchange(s.port, REQ)
        (proxied,), _ = exchange(s.port, b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 443\r\n" + REQ)
        (blocked,), _ = exchange(s.port, b"PROXY TCP4 203.0.113.7 10.0.0.1 6666 443\r\n" + REQ)
        health = s.call(manager.get_health_status())["plugins"]["client_gate"]
    assert plain.status == 200 and _seen(plain).startswith("127.0.0.1:")
    assert proxied.status == 200 and _seen(proxied) == "203.0.113.9:5555"
    assert blocked.status == 429 and blocked.body == b"slow down"
    assert blocked.header("retry-after") == "30"
    assert health["state"] == "active" and health["errors"] == 0 and health["short_circuits"] == 1
