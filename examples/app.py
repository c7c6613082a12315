"""The example served by `make run`: a small ASGI app behind the pipeline and the built-in plugins.

    make run            # covet-pipe serve examples.app:app: http://127.0.0.1:8000/
    make run-uvicorn    # the same app embedded in uvicorn
    curl -i http://127.0.0.1:8000/
    curl -i http://127.0.0.1:8000/private          # 401 without a token
    TOKEN=$(.venv/bin/python -c "import jwt, time; print(jwt.encode({'permissions': ['/private:GET'], \
        'exp': int(time.time()) + 3600}, 'covet-pipe-example-secret-change-me', algorithm='HS256'))")
    curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/private   # 200
    redis-cli -p 8000 set greeting hi        # the RESP protocol plugin, same port (covet-pipe serve)
    redis-cli -p 8000 get greeting           # "hi", from the MemoryStorage plugin
"""

from __future__ import annotations

import json
import os

from covet_pipe import PluginConfig, PluginManager, wrap
from covet_pipe.builtin import CORS, AuthGuard, JWTAuth, JWTHandler, MemoryStorage, RequestId, RespProtocol

# HS256 needs a key of 32 bytes or more; set your own outside this example.
SECRET = os.environ.get("COVET_PIPE_EXAMPLE_SECRET", "covet-pipe-example-secret-change-me")


async def hello(scope, receive, send):
    """The user's app: any ASGI 3 application."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"hello": "world", "path": scope["path"]}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


manager = PluginManager(PluginConfig(plugin_paths=[], hot_reload=False))
manager.register(RequestId())
manager.register(CORS(allow_origins=["*"]))
manager.register(JWTHandler())
manager.register(JWTAuth(secret_key=SECRET))
manager.register(AuthGuard(provider="jwt_auth", protect=["/private"]))
manager.register(MemoryStorage())
# covet-pipe's own listener also speaks Redis on the same port (uvicorn ignores protocol plugins)
manager.register(RespProtocol())

app = wrap(hello, manager)
