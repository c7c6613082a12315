"""A security header sent twice: refused (Authorization, Origin) or collapsed (x-request-id), through real servers."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.security import _apps
from tests.security._servers import body, covet_serve, get, uvicorn_serve


@pytest.fixture(scope="module", params=["serve", "uvicorn"])
def port(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if request.param == "serve":
        with covet_serve("tests.security._apps:app", log=tmp_path_factory.mktemp("dup") / "log") as p:
            yield p.port
    else:
        with uvicorn_serve(_apps.app) as s:
            yield s.port


def test_second_request_id_does_not_reach_the_app(port: int) -> None:
    r = get(port, "/x", [("x-request-id", "good-id-1"), ("x-request-id", "<script>\tx")])
    seen = body(r)["request_id"]
    assert r.status == 200 and len(seen) == 1          # collapsed to one
    assert seen[0] not in ("good-id-1", "<script>\tx") and len(seen[0]) == 32
    assert r.header("x-request-id") == seen[0]


def test_single_plain_request_id_is_kept_and_a_bad_one_replaced(port: int) -> None:
    kept = get(port, "/x", [("x-request-id", "abc-123")])
    replaced = get(port, "/x", [("x-request-id", "<script>")])
    assert body(kept)["request_id"] == ["abc-123"]
    assert body(replaced)["request_id"] != ["<script>"] and len(body(replaced)["request_id"]) == 1


@pytest.mark.parametrize("order", ["valid-first", "forged-first"])
def test_two_authorization_headers_on_a_guarded_path_get_400(port: int, order: str) -> None:
    valid, forged = "Bearer " + _apps.token(), "Bearer " + _apps.token(key="x" * 40)
    pair = [valid, forged] if order == "valid-first" else [forged, valid]
    r = get(port, "/admin", [("authorization", v) for v in pair])
    assert r.status == 400
    assert body(r) == {"error": "More than one Authorization header; send exactly one"}


def test_one_authorization_header_still_works(port: int) -> None:
    value = "Bearer " + _apps.token()
    r = get(port, "/admin", [("authorization", value)])
    assert r.status == 200 and body(r)["authorization"] == [value]


def test_two_origin_headers_get_400_without_cors_headers(port: int) -> None:
    r = get(port, "/x", [("origin", _apps.ORIGIN), ("origin", "https://evil.example.org")])
    assert r.status == 400
    assert body(r) == {"error": "More than one Origin header; send exactly one"}
    assert r.header("access-control-allow-origin") is None
