"""CORS: preflight and simple requests through a real server, compared with Starlette's semantics."""

from __future__ import annotations

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware as StarletteCORS

from covet_pipe import MiddlewareAction, MiddlewarePlugin, PluginManager, wrap
from covet_pipe.builtin import CORS, CORSMiddleware
from tests.conftest import text_app

ORIGIN = "https://app.example.com"


def served_with(serve, app=text_app, **options):
    manager = PluginManager()
    manager.register(CORS(**options))
    return serve(wrap(app, manager))


def preflight(url, origin=ORIGIN, method="GET", headers=None):
    h = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        h["access-control-request-headers"] = headers
    return httpx.options(url, headers=h)


async def vary_app(scope, receive, send):
    """200 that already varies on Accept-Encoding."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"vary", b"Accept-Encoding"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def test_preflight_allowed_origin_gets_200_with_allow_headers(serve):
    with served_with(serve, allow_origins=[ORIGIN], allow_methods=["GET", "POST"],
                     allow_headers=["X-Token"], max_age=123) as s:
        r = preflight(s.url + "/things", method="POST", headers="X-Token, Content-Type")
    assert r.status_code == 200
    assert r.text == "OK"                                   # answered here, not by the app
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-methods"] == "GET, POST"
    assert r.headers["access-control-allow-headers"] == \
        "Accept, Accept-Language, Content-Language, Content-Type, X-Token"
    assert r.headers["access-control-max-age"] == "123"
    assert "Origin" in r.headers["vary"]
    assert "access-control-allow-credentials" not in r.headers


def test_preflight_disallowed_origin_gets_400(serve):
    with served_with(serve, allow_origins=[ORIGIN]) as s:
        r = preflight(s.url + "/", origin="https://evil.example.org")
    assert r.status_code == 400
    assert r.text == "Disallowed CORS origin"
    assert "access-control-allow-origin" not in r.headers


def test_preflight_disallowed_method_gets_400(serve):
    with served_with(serve, allow_origins=["*"], allow_methods=["GET"]) as s:
        r = preflight(s.url + "/", method="DELETE")
    assert r.status_code == 400
    assert r.text == "Disallowed CORS method"


def test_preflight_disallowed_header_gets_400(serve):
    with served_with(serve, allow_origins=["*"], allow_headers=["X-Token"]) as s:
        r = preflight(s.url + "/", headers="X-Token, X-Other")
    assert r.status_code == 400
    assert r.text == "Disallowed CORS headers"


def test_preflight_wildcard_headers_echoes_requested_headers(serve):
    with served_with(serve, allow_origins=["*"], allow_headers=["*"], allow_methods=["*"]) as s:
        r = preflight(s.url + "/", method="PATCH", headers="X-Anything, X-Else")
    assert r.status_code == 200
    assert r.headers["access-control-allow-headers"] == "X-Anything, X-Else"
    assert r.headers["access-control-allow-origin"] == "*"
    assert "PATCH" in r.headers["access-control-allow-methods"]


def test_preflight_with_credentials_and_wildcard_echoes_origin(serve):
    with served_with(serve, allow_origins=["*"], allow_credentials=True,
                     allow_any_origin_with_credentials=True) as s:
        r = preflight(s.url + "/")
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"


def test_options_without_request_method_reaches_app(serve):
    with served_with(serve, allow_origins=["*"]) as s:
        r = httpx.options(s.url + "/x", headers={"origin": ORIGIN})
    assert r.text == "OPTIONS /x seen="
    assert r.headers["access-control-allow-origin"] == "*"


def test_simple_request_with_wildcard_gets_star_and_no_vary(serve):
    with served_with(serve, allow_origins=["*"]) as s:
        r = httpx.get(s.url + "/x", headers={"origin": ORIGIN})
    assert r.text == "GET /x seen="
    assert r.headers["access-control-allow-origin"] == "*"
    assert "vary" not in r.headers                          # the answer is the same for every origin


def test_simple_request_allowed_origin_is_echoed_with_vary(serve):
    with served_with(serve, allow_origins=[ORIGIN], expose_headers=["X-Request-Id"]) as s:
        r = httpx.get(s.url + "/", headers={"origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-expose-headers"] == "X-Request-Id"
    assert r.headers["vary"] == "Origin"


def test_simple_request_disallowed_origin_gets_no_cors_headers_but_vary(serve):
    with served_with(serve, allow_origins=[ORIGIN], allow_credentials=True) as s:
        r = httpx.get(s.url + "/", headers={"origin": "https://evil.example.org"})
        no_origin = httpx.get(s.url + "/")
    assert r.status_code == 200                             # the browser, not the server, enforces CORS
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-credentials" not in r.headers
    assert r.headers["vary"] == "Origin"
    # Without Origin the answer still depends on it: a cache must not reuse it for an allowed origin.
    assert no_origin.headers["vary"] == "Origin"


def test_simple_request_with_credentials_echoes_origin(serve):
    with served_with(serve, allow_origins=["*"], allow_credentials=True,
                     allow_any_origin_with_credentials=True) as s:
        r = httpx.get(s.url + "/", headers={"origin": ORIGIN})
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["vary"] == "Origin"


def test_origin_regex_allows_matching_origin_only(serve):
    with served_with(serve, allow_origin_regex=r"https://.*\.example\.com") as s:
        ok = httpx.get(s.url + "/", headers={"origin": "https://a.example.com"})
        partial = httpx.get(s.url + "/", headers={"origin": "https://a.example.com.evil.org"})
    assert ok.headers["access-control-allow-origin"] == "https://a.example.com"
    assert "access-control-allow-origin" not in partial.headers   # full match, not search


def test_vary_from_app_is_kept_and_origin_added_once(serve):
    with served_with(serve, vary_app, allow_origins=[ORIGIN]) as s:
        r = httpx.get(s.url + "/", headers={"origin": ORIGIN})
    assert r.headers.get_list("vary") == ["Accept-Encoding, Origin"]


def test_rejection_by_later_plugin_still_gets_cors_headers(serve):
    class Deny(MiddlewarePlugin):
        name = "deny"
        version = "1.0.0"
        priority = 500

        def process_request(self, request, ctx):
            return MiddlewareAction.reject(403, "no")

    manager = PluginManager()
    manager.register(CORS(allow_origins=[ORIGIN]))
    manager.register(Deny())
    with serve(wrap(text_app, manager)) as s:
        r = httpx.get(s.url + "/", headers={"origin": ORIGIN})
    assert r.status_code == 403
    assert r.headers["access-control-allow-origin"] == ORIGIN   # so the script can read the error


CONFIGS = {
    "wildcard": dict(allow_origins=["*"]),
    "explicit": dict(allow_origins=[ORIGIN], allow_methods=["GET", "PUT"], allow_headers=["X-Token"]),
    "credentials": dict(allow_origins=[ORIGIN, "https://b.example.com"], allow_credentials=True,
                        allow_headers=["*"], max_age=5),
    "regex": dict(allow_origin_regex=r"https://.*\.example\.com", allow_methods=["*"]),
}
PREFLIGHTS = [
    (ORIGIN, "GET", None),
    (ORIGIN, "PUT", "X-Token"),
    (ORIGIN, "DELETE", "x-token, X-Other"),
    ("https://evil.example.org", "GET", None),
    ("https://b.example.com", "PATCH", "Content-Type"),
]


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_preflight_answers_match_starlette(serve, config):
    options = CONFIGS[config]
    with served_with(serve, **options) as ours, serve(StarletteCORS(text_app, **options)) as theirs:
        for origin, method, headers in PREFLIGHTS:
            a = preflight(ours.url + "/p", origin, method, headers)
            b = preflight(theirs.url + "/p", origin, method, headers)
            case = (config, origin, method, headers)
            assert (a.status_code, a.text) == (b.status_code, b.text), case
            cors = lambda r: {k: v for k, v in r.headers.items()  # noqa: E731
                              if k.startswith("access-control-") or k == "vary"}
            assert cors(a) == cors(b), case


def test_cors_middleware_is_a_second_name_for_cors():
    assert CORSMiddleware is CORS
    assert CORSMiddleware(allow_origins=["*"]).name == "cors"


@pytest.mark.parametrize(("options", "message"), [
    (dict(allow_origins="*"), r"got the string '\*'; write allow_origins=\['\*'\]"),
    (dict(allow_origins=["https://example.com/"]), r"such as 'https://example.com'"),
    (dict(allow_origins=["example.com"]), r"scheme://host\[:port\]"),
    (dict(allow_origins=[42]), r"got 42 \(int\)"),
    (dict(allow_methods=["GET POST"]), r"'GET POST' is not an HTTP method"),
    (dict(allow_headers="Authorization"), r"write allow_headers=\['Authorization'\]"),
    (dict(max_age=-1), r"seconds >= 0 such as 600"),
    (dict(max_age="600"), r"seconds >= 0 such as 600"),
    (dict(allow_origin_regex="https://(.*"), r"not a regular expression"),
], ids=["origins-str", "trailing-slash", "no-scheme", "not-str", "bad-method", "headers-str",
        "negative-max-age", "str-max-age", "bad-regex"])
def test_bad_config_raises_valueerror_showing_a_correct_value(options, message):
    with pytest.raises(ValueError, match=message):
        CORS(**options)
