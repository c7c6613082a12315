"""A call_next-style middleware: cannot run sandboxed (the app would have to run in the helper)."""

from covet_pipe import MiddlewarePlugin


class Wrapper(MiddlewarePlugin):
    name = "wrapper"
    version = "1.0.0"

    async def process_request(self, request, call_next):
        return await call_next(request)


plugin = Wrapper()
