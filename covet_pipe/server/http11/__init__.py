"""HTTP/1.1 and websockets for covet-pipe's listener, and the same connection as uvicorn's ``http``.

``HTTP11Protocol`` (:mod:`.protocol`) is the built-in protocol plugin; ``UvicornHTTP``
(:mod:`.uvicorn_http`) is the class uvicorn takes: ``uvicorn --http
covet_pipe.server.http11:UvicornHTTP``. Both serve every connection with the compiled
``HttpConnection`` of :mod:`._http11`; a websocket upgrade hands the connection to :mod:`._ws`.
"""

from covet_pipe.server.http11._http11 import server_counters
from covet_pipe.server.http11.protocol import HTTP11Protocol, settings_for
from covet_pipe.server.http11.uvicorn_http import UvicornHTTP

__all__ = ["HTTP11Protocol", "UvicornHTTP", "server_counters", "settings_for"]
