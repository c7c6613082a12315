"""The RateLimit header fields of a decision (the IETF httpapi "RateLimit header fields for HTTP" draft).

The draft's current revisions define two structured fields, one item per policy (limit)::

    RateLimit-Policy: "100/second";q=100;w=1
    RateLimit: "100/second";r=37;t=1

(``q`` the quota, ``w`` its window in seconds, ``r`` what remains, ``t`` seconds until it is whole
again). Its earlier revisions, which most clients and gateways still read, had three fields for the
binding limit: ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``. Both sets are
sent. A refused request also gets ``Retry-After`` (RFC 9110 delay-seconds), the seconds until a
request would be allowed, at least 1.
"""

from __future__ import annotations

import math

from covet_pipe.ratelimit.gcra import Decision
from covet_pipe.ratelimit.spec import Limit

__all__ = ["fields", "policy_field", "refused_fields", "retry_seconds"]


def _seconds(value: float) -> str:
    return str(max(0, math.ceil(value - 1e-6)))


def _window(limit: Limit) -> str:
    return str(int(limit.period)) if limit.period == int(limit.period) else f"{limit.period:g}"


def policy_field(limits: tuple[Limit, ...]) -> str:
    """``RateLimit-Policy``: the same for every response under these limits (made once)."""
    return ", ".join(f'"{limit.text}";q={limit.count};w={_window(limit)}' for limit in limits)


def fields(d: Decision, policy: str) -> list[tuple[str, str]]:
    """The fields of an allowed (or refused) request, less Retry-After."""
    rows = d.all
    limit, remaining, reset = rows[0] if len(rows) == 1 else (d.limit, d.remaining, d.reset)
    t = str(max(0, math.ceil(reset - 1e-6)))
    if len(rows) == 1:
        current = f'"{limit.text}";r={remaining};t={t}'
    else:
        current = ", ".join(f'"{lim.text}";r={rem};t={_seconds(res)}' for lim, rem, res in rows)
    return [("ratelimit-limit", str(limit.count)), ("ratelimit-remaining", str(remaining)),
            ("ratelimit-reset", t), ("ratelimit-policy", policy), ("ratelimit", current)]


def retry_seconds(d: Decision) -> int:
    """``Retry-After``'s value: whole seconds until a request would be allowed, at least 1."""
    return max(1, math.ceil(d.retry_after - 1e-6))


def refused_fields(d: Decision, policy: str) -> list[tuple[str, str]]:
    """A 429's fields: the RateLimit ones and ``Retry-After``."""
    return fields(d, policy) + [("retry-after", str(retry_seconds(d)))]
