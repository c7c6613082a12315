"""A sandboxed plugin whose module fails while it is imported (inside the helper)."""

raise ImportError("this plugin needs a package that is not installed: geoip2")
