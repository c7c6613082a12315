"""A well-behaved sandboxed middleware: edits request and response headers, rejects, keeps ctx.state."""

import os

from covet_pipe import MiddlewareAction, MiddlewarePlugin


class Benign(MiddlewarePlugin):
    name = "benign"
    version = "1.2.0"
    priority = 10

    def __init__(self, config):
        self.out = config.get("out")        # a granted writable folder (the graceful-shutdown test)
        self.calls = 0

    async def initialize(self, ctx):
        self.greeting = ctx.config.get("greeting", "hello")

    def process_request(self, request, ctx):
        self.calls += 1
        if request.path == "/deny":
            return MiddlewareAction.reject(403, "denied in the sandbox")
        request.headers.set("x-seen", "sandboxed")
        ctx.state["token"] = f"{self.greeting}-{request.path}"
        return None

    def process_response(self, response, ctx):
        response.headers.set("x-sandbox-state", ctx.state.get("token", "lost"))
        response.headers.set("x-sandbox-pid", str(os.getpid()))
        response.headers.remove("x-drop-me")

    async def shutdown(self):
        if self.out:
            with open(os.path.join(self.out, "shutdown.txt"), "w") as f:
                f.write(f"shut down by {os.getpid()} after {self.calls} calls")


def create_plugin(config):
    return Benign(config)
