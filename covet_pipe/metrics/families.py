"""Every metric covet-pipe exports: its name, type, labels and meaning (the docs list the same).

Labels are bounded by design: ``plugin`` (a registered plugin's name), ``protocol`` (one protocol a
plugin serves: a plugin on http and websocket has a series for each), ``status_class`` (``1xx`` ...
``5xx``), ``operation`` (a StoragePlugin method's name), ``decision`` (a RateLimit plugin's:
``allowed``, ``limited``), ``fleet`` (the manager's ``fleet_name``).
Never a path, a client or a header.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from prometheus_client import utils

__all__ = ["FAMILIES", "Family", "le_text"]

_go_float: Callable[[float], str] = utils.floatToGoString      # prometheus-client leaves it untyped


def le_text(bound: float) -> str:
    """A bucket's ``le`` label as prometheus-client writes it (``"0.001024"``, ``"+Inf"``)."""
    return "+Inf" if math.isinf(bound) else _go_float(bound)


class Family(NamedTuple):
    name: str                   #: a counter's name without ``_total`` (the exposition adds it)
    kind: str                   #: "counter", "gauge" or "histogram"
    labels: tuple[str, ...]
    help: str
    #: how ``--workers N`` combines a gauge of each worker (prometheus-client's multiprocess mode)
    mode: str = "livesum"


_PLUGIN = ("plugin", "protocol")

FAMILIES: tuple[Family, ...] = (
    Family("covet_pipe_plugin_calls", "counter", _PLUGIN, "Hook calls of a middleware plugin (request side)."),
    Family("covet_pipe_plugin_errors", "counter", _PLUGIN, "Hook calls of a middleware plugin that raised."),
    Family("covet_pipe_plugin_short_circuits", "counter", _PLUGIN + ("status_class",),
           "Requests a middleware plugin answered itself, by the answer's status class."),
    Family("covet_pipe_plugin_skipped_open", "counter", _PLUGIN,
           "Failed hook calls skipped because the plugin's failure_policy is 'open'."),
    Family("covet_pipe_plugin_hook_seconds", "histogram", _PLUGIN,
           "Sampled hook time of a middleware plugin (the hooks of one request in 64 are timed, wall time)."),
    Family("covet_pipe_plugin_inflight", "gauge", _PLUGIN,
           "Requests waiting in a middleware plugin now: in an async hook that suspended, or in a call_next "
           "plugin's process_request (a sync hook never waits, so it shows 0)."),
    Family("covet_pipe_inflight_requests", "gauge", (), "Requests running through the middleware chain now."),
    Family("covet_pipe_plugin_reloads", "counter", ("plugin",), "Reloads of a plugin that succeeded."),
    Family("covet_pipe_plugin_reload_failures", "counter", ("plugin",),
           "Reloads of a plugin that failed (the old version kept serving)."),
    Family("covet_pipe_sandbox_helper_restarts", "counter", ("plugin",),
           "Sandbox helpers started again after one ended."),
    Family("covet_pipe_sandbox_helper_ends", "counter", ("plugin",),
           "Sandbox helpers that ended unexpectedly (crashed, killed by a signal or by the supervisor)."),
    Family("covet_pipe_sandbox_helper_kills", "counter", ("plugin",),
           "Sandbox helpers the supervisor killed (a deadline overrun, a broken reply)."),
    Family("covet_pipe_sandbox_quarantines", "counter", ("plugin",),
           "Times a sandboxed plugin was quarantined (no more restarts until it is reloaded)."),
    Family("covet_pipe_sandbox_quarantined", "gauge", ("plugin",), "1 while a sandboxed plugin is quarantined."),
    Family("covet_pipe_storage_calls", "counter", ("plugin", "operation"),
           "Calls of a storage engine's methods made through the manager (get_storage_engine, a service lookup)."),
    Family("covet_pipe_storage_errors", "counter", ("plugin", "operation"),
           "Calls of a storage engine's methods made through the manager that raised."),
    Family("covet_pipe_ratelimit_decisions", "counter", ("plugin", "decision"),
           "Requests a RateLimit plugin decided, by decision (allowed, limited)."),
    Family("covet_pipe_ratelimit_backend_failures", "counter", ("plugin",),
           "Decisions a RateLimit plugin made by its failure policy because its store (Redis) did not answer."),
    Family("covet_pipe_http_responses", "counter", ("status_class",),
           "Responses covet-pipe's HTTP/1.1 server started (the app's and its own refusals), by status class."),
    Family("covet_pipe_http_request_duration_seconds", "histogram", (),
           "Time from a request's parsed head to its response's last byte handed to the socket."),
    Family("covet_pipe_http_open_connections", "gauge", (), "Connections covet-pipe's server has open now."),
    Family("covet_pipe_fleet_generation", "gauge", ("fleet",),
           "The fleet generation this worker has applied (with --workers, the lowest of the workers).", "livemin"),
    Family("covet_pipe_fleet_stored_generation", "gauge", ("fleet",),
           "The fleet's generation stored in Redis, as last read (with --workers, the highest).", "livemax"),
    Family("covet_pipe_fleet_connected", "gauge", ("fleet",),
           "1 while this worker is connected to the fleet's Redis (with --workers, how many are)."),
)
