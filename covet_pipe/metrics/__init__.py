"""Prometheus metrics from the core's counters, read at scrape time (``covet_pipe.builtin.PrometheusMetrics``).

:mod:`.families` names every metric, :mod:`.readings` reads the counters, :mod:`.collector` is the
prometheus-client Collector and the scrape, :mod:`.multiprocess` sums the workers of ``--workers N``.
"""

from covet_pipe.metrics.families import FAMILIES, Family

__all__ = ["FAMILIES", "Family"]
