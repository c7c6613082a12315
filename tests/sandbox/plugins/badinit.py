"""A sandboxed middleware whose initialize() fails: it must be marked failed and its helper ended."""

from covet_pipe import MiddlewarePlugin


class BadInit(MiddlewarePlugin):
    name = "badinit"
    version = "1.0.0"

    async def initialize(self, ctx):
        raise RuntimeError(f"cannot start without setting 'dsn' (got {sorted(ctx.config)})")

    def process_request(self, request, ctx):
        return None


plugin = BadInit()
