"""covet-pipe's built-in plugins (installed as ``covet_pipe.builtin``).

They use only covet-pipe's public API, as a third-party plugin would.
"""

from covet_pipe.builtin.request_id import RequestId

__all__ = ["RequestId"]
