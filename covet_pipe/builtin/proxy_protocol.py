"""ProxyProtocol, the PROXY v1/v2 layer, by its built-in name: ``covet_pipe.builtin.ProxyProtocol``.

The layer and its parsers are :mod:`covet_pipe.server.proxy`, where the listener takes it from
for ``--trusted-proxy``; register this plugin to configure it (``trusted_proxies``, ``required``).
"""

from covet_pipe.server.proxy import V2_SIGNATURE, ProxyProtocol

__all__ = ["ProxyProtocol", "V2_SIGNATURE"]
