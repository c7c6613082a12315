"""A protocol plugin: owns connections, so it cannot run sandboxed."""

from covet_pipe.plugin import ProtocolPlugin


class Echo(ProtocolPlugin):
    name = "echo_proto"
    version = "1.0.0"

    def supported_protocols(self):
        return ["echo"]

    async def parse_request(self, data):
        raise NotImplementedError

    async def serialize_response(self, response):
        return b""


plugin = Echo()
