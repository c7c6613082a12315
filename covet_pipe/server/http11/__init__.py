"""HTTP/1.1 and websockets for covet-pipe's listener, and the same connection as uvicorn's ``http``.

``HTTP11Protocol`` is the built-in protocol plugin (:mod:`.protocol`), ``UvicornHTTP`` the class
uvicorn takes (``uvicorn --http covet_pipe.server.http11:UvicornHTTP``). Both serve every connection
with the compiled ``HttpConnection`` of :mod:`._http11`; a websocket upgrade hands the connection
to :mod:`._ws`.
"""

from covet_pipe.server.http11.protocol import HTTP11Protocol, UvicornHTTP, settings_for

__all__ = ["HTTP11Protocol", "UvicornHTTP", "settings_for"]
