"""The OpenAPI 3.1 document at GET /_plugins/openapi.json, from the admin app on a port of its own.

It validates (openapi-spec-validator), it has an operation for every route the app serves (with the
path parameters, request bodies, query parameters and answer schemas the routes declare), the bearer
scheme on every operation with its 401/403/429, and a route added to the table (as the metrics and
dashboard endpoints are) appears with its own content type.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from covet_pipe import PluginManager, admin_app
from covet_pipe.admin.openapi import document
from covet_pipe.admin.routes import ROUTES, Raw, Route
from tests._process import free_port, start_until_ready, stop

TOKEN = "t0ken-for-the-admin-openapi-tests-0123456789"

APP = f"""\
from covet_pipe import PluginManager, admin_app

admin = admin_app(PluginManager(), token={TOKEN!r})
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("openapi")
    (folder / "adminonly.py").write_text(APP)
    port = free_port()
    proc = start_until_ready([sys.executable, "-m", "uvicorn", "adminonly:admin", "--host", "127.0.0.1",
                              "--port", str(port)], port, folder, folder / "server.log")
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_plugins/openapi.json",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["content-type"] == "application/json"
            yield json.loads(r.read())
    finally:
        stop(proc)


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)          # raises on an invalid document


def test_every_route_has_an_operation_with_bearer_and_its_refusals(spec: dict[str, Any]) -> None:
    operations = {(m.upper(), p): op for p, item in spec["paths"].items() for m, op in item.items()}
    served = admin_app(PluginManager(), token=TOKEN).routes     # this module's and the others' routes
    assert set(operations) == {(r.method, r.path) for r in served}
    assert {(r.method, r.path) for r in ROUTES} <= set(operations)
    public = {(r.method, r.path) for r in served if r.public}
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "the admin token (admin_app(token=...))"}
    for (method, path), op in operations.items():
        if (method, path) in public:
            assert op["security"] == [] and "429" in op["responses"], path
            continue
        assert op["security"] == [{"bearer": []}], path
        assert {"401", "403", "429"} <= set(op["responses"]), path
        declared = [p["name"] for p in op.get("parameters", ()) if p["in"] == "path"]
        assert declared == re.findall(r"\{(\w+)\}", path), path
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))


def test_bodies_queries_and_answers_are_described(spec: dict[str, Any]) -> None:
    load = spec["paths"]["/_plugins/load"]["post"]
    body = load["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["path"] and body["properties"]["sandbox"]["type"] == "boolean"
    assert {"201", "400", "409", "422", "413"} <= set(load["responses"])
    unload = spec["paths"]["/_plugins/{name}"]["delete"]
    assert [p["name"] for p in unload["parameters"] if p["in"] == "query"] == ["cascade"]
    assert {"200", "400", "404", "409"} <= set(unload["responses"])
    one = spec["paths"]["/_plugins/{name}"]["get"]
    name = one["parameters"][0]
    assert name["schema"]["pattern"].startswith("^[A-Za-z0-9]")
    # the literal paths beside /_plugins/{name} win, so their names are no plugin's
    assert all(f" {word}" in name["description"] for word in ("health,", "chain,", "errors,", "load,", "reloads"))
    listed = spec["paths"]["/_plugins"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array" and "name" in listed["items"]["required"]


def test_a_route_added_to_the_table_appears_with_its_content_type() -> None:
    async def scrape(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
        return 200, Raw("text/plain; version=0.0.4", b"")

    extra = Route("GET", "/metrics", scrape, False, "Prometheus scrape", content_type="text/plain; version=0.0.4")
    files = Route("GET", "/_plugins/static/{file}", scrape, False, "files", content_type=("text/css", "image/svg+xml"),
                  public=True)
    spec = document(ROUTES + [extra, files], "0")
    validate(spec)
    answer = spec["paths"]["/metrics"]["get"]["responses"]["200"]
    assert answer["content"] == {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}
    static = spec["paths"]["/_plugins/static/{file}"]["get"]
    assert set(static["responses"]["200"]["content"]) == {"text/css", "image/svg+xml"}
    assert static["security"] == [] and "401" not in static["responses"] and "403" not in static["responses"]
    assert static["parameters"][0]["description"] == "the file"


def test_the_app_documents_the_routes_it_serves() -> None:
    import asyncio

    import httpx

    async def page(manager: Any, params: dict[str, str], request: Any) -> tuple[int, Any]:
        return 200, Raw("text/html", b"<p>")

    app = admin_app(PluginManager(), token=TOKEN)
    table = app.routes
    # as another module's routes join the table the app matches (app.py builds it from the lists)
    app._routes.append((re.compile("^/_plugins/page$"), Route("GET", "/_plugins/page", page, False, "a page",
                                                               content_type="text/html")))

    async def go() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.get("/_plugins/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
            return dict(r.json())

    served = asyncio.run(go())
    assert sorted(served["paths"]) == sorted({r.path for r in table} | {"/_plugins/page"})
    assert "text/html" in served["paths"]["/_plugins/page"]["get"]["responses"]["200"]["content"]
