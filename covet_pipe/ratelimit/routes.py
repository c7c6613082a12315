"""Which limits a request is held to: the longest route prefix that covers its route path, else the default.

``routes={"/api": "100/second", "/login": ["5/minute", "20/hour"]}`` with ``limit="1000/second"``:
``/api/x`` is held to 100/second, ``/login`` to both of its limits, anything else to 1000/second
(with no ``limit``, anything else is not limited). Prefixes cover whole segments (``/api`` covers
``/api`` and ``/api/x``, not ``/apix``) of the route path (the path less ``root_path``). Each route
has buckets of its own.
"""

from __future__ import annotations

from typing import Any, Mapping

from covet_pipe.ratelimit.spec import EXAMPLE, Limit, parse_limits
from covet_pipe.routing import route_path

__all__ = ["Rule", "Routes"]

_NOT_IN_PREFIX = ("*", "?", "#", "%", "{", "}")


class Rule:
    """The limits of one route; ``name`` is its prefix (``"*"`` for the default) and its buckets' prefix."""

    __slots__ = ("name", "limits", "policy", "args", "index")

    def __init__(self, name: str, limits: tuple[Limit, ...], index: int) -> None:
        self.name = name
        self.limits = limits
        self.index = index
        self.policy = ""           # the RateLimit-Policy field, filled by the plugin
        self.args: list[int] = []  # the Redis script's ARGV, filled by the plugin

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {[limit.text for limit in self.limits]})"


def _prefix(prefix: Any, who: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"{who}: a route is a path prefix starting with '/', such as '/api'; got {prefix!r}")
    bad = next((c for c in _NOT_IN_PREFIX if c in prefix), None)
    if bad is not None or any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        cut = prefix.split("*", 1)[0].rstrip("/") or "/"
        raise ValueError(f"{who}: the route {prefix!r} is matched literally against the decoded route path "
                         f"and covers its whole subtree; write {cut!r} (no wildcards, query, braces, "
                         "percent-escapes or controls)")
    return prefix.rstrip("/") or "/"


class Routes:
    """The rules, matched by route path."""

    def __init__(self, limit: Any, routes: Mapping[str, Any] | None, who: str) -> None:
        rules: list[Rule] = []
        if routes is not None:
            if not isinstance(routes, Mapping):
                raise ValueError(f"{who}: routes= maps path prefixes to limits, such as "
                                 f"{{'/api': '100/second', '/login': '5/minute'}}; got {routes!r}")
            seen: dict[str, Any] = {}
            for prefix, value in routes.items():
                name = _prefix(prefix, who)
                if name in seen:
                    raise ValueError(f"{who}: the routes {seen[name]!r} and {prefix!r} are the same prefix; "
                                     "keep one")
                seen[name] = prefix
                rules.append(Rule(name, parse_limits(value, f"{who} (route {prefix!r})"), len(rules)))
        self.default = Rule("*", parse_limits(limit, who), len(rules)) if limit is not None else None
        if self.default is None and not rules:
            raise ValueError(f"{who}: no limit given; write limit={EXAMPLE.split(' or ')[0].split(', ')[0]}, "
                             f"or routes={{'/api': '100/second'}}")
        # longest prefix first: the first that covers the path is the most specific one
        self.prefixed = tuple(sorted(rules, key=lambda r: -len(r.name)))
        self.all = tuple(rules) + ((self.default,) if self.default is not None else ())

    def match(self, request: Any) -> Rule | None:
        """The rule for *request*, or None when no route covers it and there is no default limit."""
        if not self.prefixed:
            return self.default
        path = route_path(request.scope)
        for rule in self.prefixed:
            p = rule.name
            if p == "/" or path == p or path.startswith(p + "/"):
                return rule
        return self.default
