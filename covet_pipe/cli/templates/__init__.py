"""The files ``covet-pipe new`` writes, one ``.tmpl`` per file (``string.Template``: ``$name``, ``$header``).

Shipped as package data; :mod:`covet_pipe.cli.new` reads them with :mod:`importlib.resources`.
"""
