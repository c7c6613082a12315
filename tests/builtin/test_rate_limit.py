"""RateLimit in memory through a pipeline: answers and their headers, routes, key kinds (the client
address through a real PROXY header on covet-pipe's listener), metadata and the Prometheus families."""

from __future__ import annotations

import socket
from typing import Any

from covet_pipe.builtin import ProxyProtocol, RateLimit
from covet_pipe.metrics.readings import read
from tests.builtin._rate_limit_apps import SetsUser, ok_app, pipeline
from tests.server.conftest import CovetServer


async def test_allowed_answers_carry_the_fields_and_the_refusal_is_429_with_retry_after() -> None:
    async with pipeline(RateLimit("3/minute", burst=2)) as s:
        got = [await s.get() for _ in range(4)]
    assert [r.status for r in got] == [200, 200, 200, 429]
    first = got[0].headers
    assert first["ratelimit-limit"] == "3" and first["ratelimit-remaining"] == "2"
    assert first["ratelimit-reset"] == "20"                      # one request's worth: 60/3 s
    assert first["ratelimit-policy"] == '"3/minute";q=3;w=60'
    assert first["ratelimit"] == '"3/minute";r=2;t=20'
    assert [r.headers["ratelimit-remaining"] for r in got[:3]] == ["2", "1", "0"]
    refused = got[3]
    assert refused.headers["retry-after"] == "20" and refused.headers["ratelimit-remaining"] == "0"
    assert refused.headers["ratelimit-reset"] == "60"
    assert b"3/minute" in refused.body and b"Traceback" not in refused.body


async def test_headers_off_leaves_allowed_answers_alone() -> None:
    async with pipeline(RateLimit("1/minute", headers=False)) as s:
        ok, refused = await s.get(), await s.get()
    assert ok.status == 200 and "ratelimit-limit" not in ok.headers
    assert refused.status == 429 and refused.headers["retry-after"] == "60"


async def test_routes_have_limits_and_buckets_of_their_own() -> None:
    plugin = RateLimit("2/hour", burst=1, routes={"/login": "2/minute", "/api/": ["1000/minute", "3/hour"]},
                       key="global")
    async with pipeline(plugin) as s:
        login = [(await s.get("/login")).status for _ in range(3)]
        api = [await s.get("/api/items") for _ in range(4)]
        other = [(await s.get("/apix")).status for _ in range(4)]     # not under /api: the default limit
        deep = await s.get("/login/sub")
    assert login == [200, 200, 429]              # burst 1: two at once
    assert [r.status for r in api] == [200, 200, 429, 429]
    assert api[2].headers["ratelimit-limit"] == "3"          # 3/hour binds, and the headers speak of it
    assert api[0].headers["ratelimit-policy"] == '"1000/minute";q=1000;w=60, "3/hour";q=3;w=3600'
    assert other == [200, 200, 429, 429]         # each route has buckets of its own, and so has the default
    assert deep.status == 429                    # /login covers /login/sub
    assert plugin.metadata()["limits"] == {"/login": ["2/minute"], "/api": ["1000/minute", "3/hour"],
                                           "*": ["2/hour"]}


async def test_without_a_default_limit_other_paths_pass() -> None:
    async with pipeline(RateLimit(routes={"/login": "1/hour"})) as s:
        assert [(await s.get("/login")).status for _ in range(2)] == [200, 429]
        assert [(await s.get("/")).status for _ in range(5)] == [200] * 5


async def test_header_key() -> None:
    async with pipeline(RateLimit("1/hour", key="header:x-api-key")) as s:
        assert (await s.get(x_api_key="a")).status == 200
        assert (await s.get(x_api_key="a")).status == 429
        assert (await s.get(x_api_key="b")).status == 200
        assert (await s.get()).status == 200          # no key: one shared bucket of its own
        assert (await s.get()).status == 429
        assert (await s.get(x_api_key="x" * 500)).status == 200   # long values are hashed, still keyed


async def test_jwt_claim_key_uses_the_verified_user_else_the_client() -> None:
    async with pipeline(SetsUser(), RateLimit("1/hour", key="jwt:sub")) as s:
        assert (await s.get(x_user="alice")).status == 200
        assert (await s.get(x_user="alice")).status == 429
        assert (await s.get(x_user="bob")).status == 200
        assert (await s.get()).status == 200         # anonymous: by client address
        assert (await s.get()).status == 429


async def test_path_and_global_keys() -> None:
    async with pipeline(RateLimit("1/hour", key="path", name="per_path"),
                        RateLimit("3/hour", burst=2, key="global", name="all")) as s:
        assert [(await s.get(p)).status for p in ("/a", "/a", "/b")] == [200, 429, 200]
        assert (await s.get("/c")).status == 429      # the global one: three let through already


def test_client_key_is_the_real_client_behind_a_trusted_proxy() -> None:
    from covet_pipe import PluginManager
    manager = PluginManager()
    manager.register(ProxyProtocol(trusted_proxies=["127.0.0.1/32"]))
    manager.register(RateLimit("1/hour"))

    def get(source: str) -> int:
        head = f"PROXY TCP4 {source} 10.0.0.1 40000 80\r\n".encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return int(data.split(b" ", 2)[1])

    with CovetServer(ok_app, manager, port=0) as server:
        assert get("203.0.113.7") == 200
        assert get("203.0.113.7") == 429        # same real client, though every connection comes from 127.0.0.1
        assert get("198.51.100.9") == 200


async def test_counts_in_metadata_and_prometheus_families() -> None:
    plugin = RateLimit("2/hour", burst=1, name="rl")
    async with pipeline(plugin) as s:
        for _ in range(5):
            await s.get()
        meta = plugin.metadata()
        readings: Any = read(s.manager, server=False)
    assert (meta["allowed"], meta["limited"], meta["backend_failures"]) == (2, 3, 0)
    assert meta["storage"] == "memory" and meta["key"] == "client"
    assert sorted(readings["covet_pipe_ratelimit_decisions"]) == [(("rl", "allowed"), 2), (("rl", "limited"), 3)]
    assert readings["covet_pipe_ratelimit_backend_failures"] == [(("rl",), 0)]


async def test_a_reload_hands_the_buckets_on_for_unchanged_limits() -> None:
    import json
    old = RateLimit("1/hour", routes={"/login": "1/hour"})
    async with pipeline(old) as s:
        assert [(await s.get(p)).status for p in ("/", "/login")] == [200, 200]
        state = json.loads(json.dumps(old.export_state()))    # it travels as JSON
    new = RateLimit("1/hour", routes={"/login": "2/hour"})     # /login's limit changed: it starts whole
    new.import_state(state)
    async with pipeline(new) as s:
        assert (await s.get("/")).status == 429                # still counted after the reload
        assert (await s.get("/login")).status == 200
    assert RateLimit("1/hour", storage="redis://127.0.0.1:1/0").export_state() is None
