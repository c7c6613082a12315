"""A scrape through a real ``covet-pipe serve`` matches what the test did: N requests, K rejects, a reload."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.metrics._served import ADMIN_TOKEN, SCRAPE_TOKEN, get, scrape, serve, stop, value, write_app

N = 200         #: requests the app answers
K = 7           #: requests the guard rejects (403)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Path]]:
    folder = tmp_path_factory.mktemp("metrics1")
    proc, base = serve(folder)
    try:
        yield proc, base, folder
    finally:
        stop(proc)


def test_a_scrape_counts_the_requests_the_rejects_and_the_server(server: tuple[Any, str, Path]) -> None:
    _, base, _ = server
    for _ in range(N):
        assert get(base + "/")[0] == 200
    for _ in range(K):
        assert get(base + "/deny")[0] == 403
    s = scrape(base)
    assert value(s, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == N + K
    assert value(s, "covet_pipe_plugin_short_circuits_total", plugin="guard", protocol="http",
                 status_class="4xx") == K
    assert value(s, "covet_pipe_plugin_errors_total", plugin="guard", protocol="http") == 0
    # the scrape itself: PrometheusMetrics' first call (its paths are the scrape's: the core never called
    # it for the other requests), read while it runs (its answer not counted yet)
    assert value(s, "covet_pipe_plugin_calls_total", plugin="prometheus_metrics", protocol="http") == 1
    assert value(s, "covet_pipe_http_responses_total", status_class="2xx") == N
    assert value(s, "covet_pipe_http_responses_total", status_class="4xx") == K
    assert value(s, "covet_pipe_http_responses_total", status_class="5xx") == 0
    assert value(s, "covet_pipe_http_request_duration_seconds_count") == N + K
    assert value(s, "covet_pipe_http_request_duration_seconds_bucket", le="+Inf") == N + K
    assert 0 < value(s, "covet_pipe_http_request_duration_seconds_sum") < (N + K) * 1.0
    assert value(s, "covet_pipe_http_open_connections") >= 1          # the scrape's own
    assert value(s, "covet_pipe_inflight_requests") >= 1
    # one request in 64 has its hooks timed: the histogram holds those samples, its buckets in order
    sampled = value(s, "covet_pipe_plugin_hook_seconds_count", plugin="guard", protocol="http")
    assert sampled is not None and (N + K) // 64 - 1 <= sampled <= (N + K) // 64 + 1
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in s.items()
                     if name == "covet_pipe_plugin_hook_seconds_bucket" and ("plugin", "guard") in labels)
    assert [v for _, v in buckets] == sorted(v for _, v in buckets) and buckets[-1][1] == sampled
    # PrometheusMetrics answered its own scrape; nothing else short-circuited with a 2xx
    again = scrape(base)
    assert value(again, "covet_pipe_plugin_short_circuits_total", plugin="prometheus_metrics", protocol="http",
                 status_class="2xx") == 1
    assert value(again, "covet_pipe_http_responses_total", status_class="2xx") == N + 1


def test_a_reload_through_the_admin_api_is_counted_and_the_counters_carry_on(server: tuple[Any, str, Path]) -> None:
    _, base, folder = server
    before = scrape(base)
    calls = value(before, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http")
    write_app(folder, version="2.0.0")
    status, _, body = get(base + "/_plugins/guard/reload", method="POST", token=ADMIN_TOKEN)
    assert status == 200, body
    for _ in range(3):
        assert get(base + "/deny")[0] == 403
    after = scrape(base)
    assert value(after, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == calls + 3
    # reload counts come from manager.reload_counts(); a manager without it leaves the families out
    if get(base + "/probe")[2] == b"yes":
        assert value(after, "covet_pipe_plugin_reloads_total", plugin="guard") == 1
        assert value(after, "covet_pipe_plugin_reload_failures_total", plugin="guard") == 0
    else:
        assert not any(name.startswith("covet_pipe_plugin_reload") for name, _ in after), sorted(after)

def test_the_admin_app_serves_the_same_scrape_behind_its_token(server: tuple[Any, str, Path]) -> None:
    _, base, _ = server
    assert get(base + "/admin/metrics")[0] == 401
    assert get(base + "/admin/metrics", token=ADMIN_TOKEN + "x")[0] == 403
    s = scrape(base, "/admin/metrics", token=ADMIN_TOKEN)
    served = scrape(base)
    assert value(s, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http") == \
        value(served, "covet_pipe_plugin_calls_total", plugin="guard", protocol="http")


def test_the_served_scrape_needs_its_token_and_answers_nothing_else(server: tuple[Any, str, Path]) -> None:
    _, base, _ = server
    status, headers, body = get(base + "/metrics")
    assert (status, body) == (401, b"unauthorized\n") and headers["www-authenticate"] == "Bearer"
    assert get(base + "/metrics", token=SCRAPE_TOKEN[:-1] + "?")[:3:2] == (403, b"forbidden\n")
    assert get(base + "/metrics", method="POST", token=SCRAPE_TOKEN)[0] == 405
    assert get(base + "/metrics/x")[2] == b"hello"          # another path goes to the app


def test_the_servers_own_refusals_count_among_the_responses(server: tuple[Any, str, Path]) -> None:
    _, base, _ = server
    before = value(scrape(base), "covet_pipe_http_responses_total", status_class="4xx")
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")        # a malformed head: 400
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    after = scrape(base)
    assert value(after, "covet_pipe_http_responses_total", status_class="4xx") == before + 1
