"""A prometheus-client Collector over the core's counters, read when a scrape asks for them.

``CoreCollector(manager)`` builds each family from :func:`covet_pipe.metrics.readings.read` at
``collect()`` time: no prometheus object is touched while requests are served; register it in a
registry of your own to serve it beside other metrics. ``scrape(manager)`` answers a scrape: the
same families written by :mod:`.text` (ten times faster than ``generate_latest``); with
``--workers N``, the sum over the workers instead (:mod:`covet_pipe.metrics.multiprocess`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from covet_pipe.metrics import multiprocess
from covet_pipe.metrics.families import FAMILIES, Family, le_text
from covet_pipe.metrics.readings import Histogram, Readings, read
from covet_pipe.metrics.text import render

__all__ = ["CONTENT_TYPE", "CoreCollector", "Histogram", "cumulative", "families_from", "scrape"]

#: the text exposition format's content type: version 0.0.4, what :mod:`.text` writes (every
#: Prometheus reads it; prometheus-client's newer ``CONTENT_TYPE_LATEST`` names 1.0.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def cumulative(bounds: tuple[float, ...], counts: tuple[int, ...]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus buckets: (``le``, how many at or below it), the last ``+Inf``."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip(bounds, counts):
        total += n
        out.append((le_text(bound), float(total)))
    return out


def _family(family: Family, samples: list[tuple[tuple[str, ...], Any]]) -> Metric:
    labels = list(family.labels)
    if family.kind == "counter":
        counter = CounterMetricFamily(family.name, family.help, labels=labels)
        for values, value in samples:
            counter.add_metric(list(values), float(value))
        return counter
    if family.kind == "gauge":
        gauge = GaugeMetricFamily(family.name, family.help, labels=labels)
        for values, value in samples:
            gauge.add_metric(list(values), float(value))
        return gauge
    histogram = HistogramMetricFamily(family.name, family.help, labels=labels)
    for values, value in samples:
        bounds, counts, total = value
        histogram.add_metric(list(values), cumulative(bounds, counts), float(total))
    return histogram


def families_from(readings: Readings) -> Iterator[Metric]:
    """The prometheus-client families of *readings*, in FAMILIES' order (absent ones left out)."""
    for family in FAMILIES:
        samples = readings.get(family.name)
        if samples is not None:
            yield _family(family, samples)


class CoreCollector(Collector):
    """The core's counters of *manager* (and this process's HTTP/1.1 server) as Prometheus families."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        return families_from(read(self.manager))


def scrape(manager: Any) -> tuple[str, bytes]:
    """(content type, body) of one scrape: this process's counters, or with ``--workers N`` every worker's sum."""
    if multiprocess.enabled():
        return CONTENT_TYPE, multiprocess.scrape(manager)
    return CONTENT_TYPE, render(read(manager))

