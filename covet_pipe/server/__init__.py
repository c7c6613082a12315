"""covet-pipe's own listener: the protocol chain, HTTP/1.1 and ``covet_pipe.serve``."""
