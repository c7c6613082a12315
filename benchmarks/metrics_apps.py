"""The apps `make bench-metrics` serves: 10 no-op plugins with PrometheusMetrics (``on``) and without (``off``)."""

from __future__ import annotations

from typing import Any

import apps

PLUGINS = apps.E2E_LAYERS


def _build(metrics: bool) -> Any:
    from covet_pipe.builtin import PrometheusMetrics

    pipeline = apps.covet(apps.hello, apps.sync_plugins(PLUGINS), start=False)
    if metrics:
        pipeline.manager.register(PrometheusMetrics(pipeline.manager))
    return pipeline


def __getattr__(name: str) -> Any:
    if name in ("on", "off"):
        value = globals()[name] = _build(name == "on")
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
