"""RespProtocol, the Redis protocol's plugin, by its built-in name: ``covet_pipe.builtin.RespProtocol``.

The protocol is the package :mod:`covet_pipe.server.resp` (detection and configuration in
:mod:`covet_pipe.server.resp.protocol`); register this plugin to serve redis clients on the listener.
"""

from covet_pipe.server.resp.protocol import RespProtocol

__all__ = ["RespProtocol"]
