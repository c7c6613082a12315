"""The Redis protocol (RESP2, RESP3 through HELLO) on covet-pipe's listener.

:mod:`.protocol` is the protocol plugin ``RespProtocol`` (detection, configuration; registered as
``covet_pipe.builtin.RespProtocol``), :mod:`.codec` parses commands and encodes replies,
:mod:`.commands` is the command table (redis's arities and error texts), :mod:`.connection` is the
``asyncio.Protocol`` of one connection, which runs every command through the middleware chain.
"""

from covet_pipe.server.resp.protocol import RespProtocol

__all__ = ["RespProtocol"]
