"""Limit specs: ``"100/second"``, ``"5/minute"``, ``"1000/hour"``, ``"10/30 seconds"`` into a :class:`Limit`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Limit", "parse_limit", "parse_limits", "EXAMPLE"]

#: what an error message shows as a valid spec
EXAMPLE = "'100/second', '5/minute' or '1000/hour'"

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_SPEC = re.compile(r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+)?\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Limit:
    """*count* requests per *period* seconds; ``text`` is the canonical spec (``"100/second"``)."""

    count: int
    period: float
    text: str
    #: seconds between two requests at the steady rate (GCRA's emission interval)
    interval: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", self.period / self.count)


def _canonical(count: int, many: int, unit: str) -> str:
    word = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}[_UNITS[unit]]
    return f"{count}/{word}" if many == 1 else f"{count}/{many} {word}s"


def parse_limit(spec: Any, who: str = "RateLimit") -> Limit:
    """A :class:`Limit` from ``"COUNT/PERIOD"`` (``"100/second"``, ``"5 per minute"``, ``"10/30 seconds"``).

    :raises ValueError: naming *who* and showing a valid spec.
    """
    if isinstance(spec, Limit):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"{who}: a limit is a string COUNT/PERIOD such as {EXAMPLE}, got {spec!r}")
    m = _SPEC.match(spec)
    unit = m.group(3).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise ValueError(f"{who}: {spec!r} is not a limit; write COUNT/PERIOD, such as {EXAMPLE} "
                         "(units: second, minute, hour, day; '10/30 seconds' for a longer period)")
    count, many = int(m.group(1)), int(m.group(2) or 1)
    if count < 1 or many < 1:
        raise ValueError(f"{who}: {spec!r} lets nothing through; the count and the period are at least 1, "
                         f"such as {EXAMPLE}")
    return Limit(count, many * _UNITS[unit], _canonical(count, many, unit))


def parse_limits(value: Any, who: str = "RateLimit") -> tuple[Limit, ...]:
    """One spec or a list of them (every one must hold) into Limits; an empty list is refused."""
    items = [value] if isinstance(value, (str, Limit)) else value
    try:
        limits = tuple(parse_limit(item, who) for item in items)
    except TypeError:
        raise ValueError(f"{who}: expected a limit such as {EXAMPLE} or a list of them, got {value!r}") from None
    if not limits:
        raise ValueError(f"{who}: an empty list of limits limits nothing; give one such as {EXAMPLE}")
    return limits
