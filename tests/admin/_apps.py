"""What the admin tests serve: an app with the admin API mounted on /_plugins beside a plain one,
and the ``stamp`` plugin whose version shows in an ``x-stamp`` header."""

from __future__ import annotations

STAMP = """\
from covet_pipe import MiddlewarePlugin

class Stamp(MiddlewarePlugin):
    name = "stamp"
    version = "{version}"

    def process_response(self, response, ctx):
        response.headers.set("x-stamp", "{version}")

plugin = Stamp()
"""

_APP = """\
from covet_pipe import PluginConfig, PluginManager, admin_app, wrap

manager = PluginManager(PluginConfig(plugin_paths=["plugins"], hot_reload=True{options}))

async def hello(scope, receive, send):
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": b"hello"}})

served = wrap(hello, manager)
admin = admin_app(manager, token={token!r})

async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith("/_plugins"):
        await admin(scope, receive, send)
    else:
        await served(scope, receive, send)
"""


def admin_beside_app(token: str, *, entry_points: bool = True) -> str:
    """The source of a module whose ``app`` serves the admin API (guarded by *token*) on /_plugins
    and ``hello`` behind the manager's chain elsewhere; plugins come from ./plugins."""
    return _APP.format(token=token, options="" if entry_points else ", entry_points=False")
