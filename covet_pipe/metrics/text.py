"""The text exposition format (version 0.0.4), written straight from the readings.

prometheus-client's ``generate_latest`` validates and escapes every label name of every sample in
Python: 40 ms for 100 plugins here, all of it on the event loop. The names and label names here are
fixed (:mod:`.families`), so only label values need escaping; this writes the same text in a tenth
of the time (the tests parse it with prometheus-client's parser and compare it with
``generate_latest`` over :class:`~covet_pipe.metrics.collector.CoreCollector`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from covet_pipe.metrics.families import FAMILIES, Family, le_text
from covet_pipe.metrics.readings import Readings

__all__ = ["render", "render_metrics"]


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values)) + "}"


def _head(out: list[str], name: str, kind: str, help_text: str) -> None:
    out.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
    out.append(f"# TYPE {name} {kind}")


def _family(out: list[str], family: Family, samples: list[tuple[tuple[str, ...], Any]]) -> None:
    name, names = family.name, family.labels
    _head(out, name, family.kind, family.help)
    if family.kind == "counter":
        for values, value in samples:
            out.append(f"{name}_total{_labels(names, values)} {_number(value)}")
    elif family.kind == "gauge":
        for values, value in samples:
            out.append(f"{name}{_labels(names, values)} {_number(value)}")
    else:
        for values, (bounds, counts, total) in samples:
            prefix = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values))
            prefix = prefix + "," if prefix else ""
            running = 0
            for bound, n in zip(bounds, counts):
                running += n
                out.append(f'{name}_bucket{{{prefix}le="{le_text(bound)}"}} {_number(running)}')
            out.append(f"{name}_count{_labels(names, values)} {_number(running)}")
            out.append(f"{name}_sum{_labels(names, values)} {_number(total)}")


def render(readings: Readings) -> bytes:
    """*readings* as the text a scrape answers, families in FAMILIES' order."""
    out: list[str] = []
    for family in FAMILIES:
        samples = readings.get(family.name)
        if samples is not None:
            _family(out, family, samples)
    out.append("")
    return "\n".join(out).encode()


def render_metrics(metrics: Iterable[Any]) -> bytes:
    """prometheus-client Metric objects (a MultiProcessCollector's) as the text a scrape answers."""
    out: list[str] = []
    for metric in metrics:
        kind = "untyped" if metric.type == "unknown" else metric.type
        _head(out, metric.name, kind, metric.documentation)
        for s in metric.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in s.labels.items())
            out.append(f"{s.name}{{{labels}}} {_number(s.value)}" if labels else f"{s.name} {_number(s.value)}")
    out.append("")
    return "\n".join(out).encode()
