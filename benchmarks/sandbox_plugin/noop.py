"""A no-op sandboxed request hook (the benchmark's subject)."""

from covet_pipe import MiddlewarePlugin


class Noop(MiddlewarePlugin):
    name = "noop"
    version = "1.0.0"

    def process_request(self, request, ctx):
        return None


plugin = Noop()
