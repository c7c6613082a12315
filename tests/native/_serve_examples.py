"""Serve the built examples beside a Python plugin with uvicorn and print what clients saw, as JSON.

Run in a child process by test_served.py (a native plugin that crashes takes its process with it):
    python -m tests.native._serve_examples PLUGIN_DIR SETTINGS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx

from covet_pipe import MiddlewarePlugin, PluginConfig, PluginManager, wrap
from tests.conftest import Served


class Audit(MiddlewarePlugin):
    """A Python plugin between the native ones: records what it saw of their edits."""

    name = "audit"
    version = "1.0.0"
    priority = 150   # after api_key (100), before header_rewrite (300) and path_counter (500)

    def process_request(self, request: Any, ctx: Any) -> None:
        ctx.state["x-native"] = request.headers.get("x-native") or "-"

    def process_response(self, response: Any, ctx: Any) -> None:
        seen = f"request x-native={ctx.state['x-native']}; response x-powered-by=" \
               f"{response.headers.get('x-powered-by') or '-'}"
        response.headers.add("x-audit", seen)


async def app(scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"server", b"the-app")]})
    await send({"type": "http.response.body", "body": json.dumps(headers).encode()})


def main() -> None:
    plugin_dir, settings = sys.argv[1], json.loads(sys.argv[2])
    manager = PluginManager(PluginConfig(plugin_paths=[plugin_dir], plugin_settings=settings))
    report = asyncio.run(manager.load_plugins())
    manager.register(Audit())
    out: dict[str, Any] = {"loaded": sorted(report.loaded), "failed": report.failed, "responses": {}}
    with Served(wrap(app, manager), server_header=False) as server:
        requests = {
            "no_key": ("/a", {}),
            "wrong_key": ("/a", {"x-api-key": "nope"}),
            "first": ("/a", {"x-api-key": "s3cret"}),
            "second": ("/a", {"x-api-key": "s3cret"}),
            "other_path": ("/b", {"x-api-key": "s3cret"}),
            "public": ("/public/x", {}),
        }
        for label, (path, headers) in requests.items():
            r = httpx.get(server.url + path, headers=headers)
            out["responses"][label] = {"status": r.status_code, "headers": dict(r.headers),
                                       "body": r.text}
        out["chain"] = [(e.name, e.kind) for e in manager.get_middleware_chain()]
        out["health"] = asyncio.run_coroutine_threadsafe(manager.get_health_status(), server.loop).result(10)
        out["list"] = {p["name"]: p for p in manager.list_plugins()}
    # shutdown() of every native plugin has run once the server stopped (lifespan)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
