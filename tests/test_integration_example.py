"""The integration example of the API contract: PluginConfig and PluginManager in a Starlette app,
with the /_plugins routes, served by a real uvicorn on 127.0.0.1.

Metrics are left out (a later issue); the storage engine is the built-in "memory" one.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import jwt
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from covet_pipe import wrap
from covet_pipe.builtin import AuthGuard, CORSMiddleware, JWTAuth, JWTHandler, MemoryStorage
from covet_pipe.plugins import PluginConfig, PluginManager

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def build_app(tmp_path):
    plugin_config = PluginConfig(
        plugin_paths=[str(tmp_path / "opt"), "./plugins-that-do-not-exist", "~/.covet/plugins"],
        sandbox_enabled=True,
        allowed_syscalls=["read", "write", "socket"],
        memory_limit="100MB",
        cpu_limit=0.8,
        hot_reload=True,
        reload_on_change=True,
        auto_resolve_dependencies=True,
        allow_circular_dependencies=False,
    )
    plugin_manager = PluginManager(plugin_config)
    plugin_manager.register(JWTHandler())
    plugin_manager.register(JWTAuthPlugin(secret_key=SECRET))
    plugin_manager.register(CORSMiddleware(allow_origins=["*"]))
    plugin_manager.register(MemoryStorage())
    plugin_manager.register(AuthGuard(provider="jwt_auth", protect=["/secret"]))

    async def plugin_health(request):
        return JSONResponse(await plugin_manager.get_health_status())

    async def reload_plugin(request):
        await plugin_manager.reload_plugin(request.path_params["plugin_name"])
        return JSONResponse({"status": "reloaded"})

    async def list_plugins(request):
        return JSONResponse(plugin_manager.list_plugins())

    async def secret(request):
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await plugin_manager.initialize_all()   # at the app's startup
        app.state.middleware_stack = plugin_manager.get_middleware_chain()
        app.state.auth_provider = plugin_manager.get_auth_provider("jwt_auth")
        app.state.storage_engine = plugin_manager.get_storage_engine("memory")
        yield
        await plugin_manager.shutdown_all()     # at the app's shutdown

    app = Starlette(routes=[
        Route("/_plugins/health", plugin_health),
        Route("/_plugins/{plugin_name}/reload", reload_plugin, methods=["POST"]),
        Route("/_plugins", list_plugins),
        Route("/secret", secret),
    ], lifespan=lifespan)
    return app, plugin_manager


class JWTAuthPlugin(JWTAuth):
    """The built-in JWTAuth (name "jwt_auth") as the auth plugin."""


async def test_integration_example_runs_as_written(tmp_path, serve):
    (tmp_path / "opt").mkdir()
    app, manager = build_app(tmp_path)
    report = await manager.load_plugins()
    assert report.loaded == []                       # nothing to discover; missing paths reported
    assert any("does not exist" in why for why in report.failed.values())
    with serve(wrap(app, manager)) as s:
        health = httpx.get(s.url + "/_plugins/health").json()
        assert health["status"] == "ok"
        assert set(health["plugins"]) == {"jwt_handler", "jwt_auth", "cors", "memory", "auth_guard"}
        listed = {p["name"]: p for p in httpx.get(s.url + "/_plugins").json()}
        assert listed["jwt_auth"]["kinds"] == ["auth"] and listed["cors"]["style"] == "hook"
        assert [e.name for e in app.state.middleware_stack] == ["cors", "auth_guard"]
        assert app.state.auth_provider is manager.get_plugin("jwt_auth")
        # the engine, seen through the view that counts its calls (covet_pipe_storage_calls_total)
        assert app.state.storage_engine is manager.get_storage_engine("memory")
        assert app.state.storage_engine._engine is manager.get_plugin("memory")

        assert httpx.get(s.url + "/secret").status_code == 401
        token = jwt.encode({"sub": "ann", "roles": ["admin"], "exp": int(time.time()) + 60}, SECRET,
                           algorithm="HS256")
        ok = httpx.get(s.url + "/secret", headers={"authorization": f"Bearer {token}",
                                                   "origin": "https://example.com"})
        assert ok.status_code == 200 and ok.json() == {"ok": True}
        assert ok.headers["access-control-allow-origin"] == "*"
        viewer = jwt.encode({"sub": "bob", "roles": ["viewer"], "permissions": ["/other:GET"],
                             "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
        assert httpx.get(s.url + "/secret", headers={"authorization": f"Bearer {viewer}"}).status_code == 403
        can = jwt.encode({"sub": "cy", "permissions": ["/secret:GET"], "exp": int(time.time()) + 60}, SECRET,
                         algorithm="HS256")
        assert httpx.get(s.url + "/secret", headers={"authorization": f"Bearer {can}"}).status_code == 200
    assert {p["state"] for p in manager.list_plugins()} == {"stopped"}
