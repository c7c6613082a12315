"""What happened to the plugins lately: bounded rings of reloads and of plugin errors.

A :class:`History` keeps the last ``MAX_EVENTS`` reloads (name, old and new version, ok or not, the
error, how long it took, when) and the last ``MAX_EVENTS`` errors the plugins raised (plugin, hook,
error text, when), plus the number of reloads that worked and failed per plugin. Nothing grows
without bound: the rings are ``deque(maxlen=...)``, texts are cut to ``MAX_TEXT`` characters and made
printable (they may quote a client's bytes), the per-plugin counts keep at most ``MAX_NAMES`` names.

Reloads are recorded by the manager, which every reload goes through (the API's, the file
watcher's). Plugin errors are taken from the reports already made of them: the error the core logs
on ``covet_pipe.plugins`` when a hook raises, and the registry's on ``covet_pipe.registry`` when a
plugin's ``initialize()`` or ``shutdown()`` fails, and the sandbox's on the plugin's own logger
(``covet_pipe.plugins.NAME``) when its helper is unavailable, ends, fails to restart or is quarantined
(a logging filter on those loggers, so no handler is added and the logging set-up sees the same
records as before; a sandboxed plugin's own output reaches that logger under another template, so it
cannot make an entry). A record below a logger's level is
not made, so it is not seen either.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from covet_pipe.logsafe import printable

__all__ = ["History", "ReloadEvent", "PluginErrorEvent", "MAX_EVENTS", "MAX_TEXT", "record_reload",
           "record_error", "reload_history", "recent_errors", "reload_counts", "watch_plugin_errors",
           "watch_plugin_logger", "timed_reload"]

#: events each ring keeps (the oldest go first)
MAX_EVENTS = 200
#: characters of an error text kept (then "...")
MAX_TEXT = 500
#: plugin names the reload counts keep (names come from plugin files, not clients; still bounded)
MAX_NAMES = 10_000
#: the loggers a plugin's failure is reported on: a hook's (the core), a start's or stop's (the registry)
PLUGIN_ERROR_LOGGERS = ("covet_pipe.plugins", "covet_pipe.registry")


class ReloadEvent(NamedTuple):
    """One reload: which plugin, from which version to which, whether it worked and how long it took."""
    name: str
    old_version: str | None
    new_version: str | None     #: None when the new version never loaded
    ok: bool
    error: str | None           #: why it failed (printable, cut to MAX_TEXT)
    duration_s: float
    at: float                   #: wall-clock time (seconds since the epoch) when it ended


class PluginErrorEvent(NamedTuple):
    """One error a plugin raised: in which hook, with what message, when."""
    plugin: str
    hook: str
    error: str                  #: ``ExceptionType: message`` (printable, cut to MAX_TEXT)
    at: float


class History:
    """The rings of one manager. *owns* tells which plugin names are this manager's (for errors)."""

    def __init__(self, owns: Callable[[str], bool] | None = None, maxlen: int = MAX_EVENTS) -> None:
        self.reloads: deque[ReloadEvent] = deque(maxlen=maxlen)
        self.errors: deque[PluginErrorEvent] = deque(maxlen=maxlen)
        #: plugin name -> [reloads that worked, reloads that failed]
        self.counts: dict[str, list[int]] = {}
        self.owns = owns


def _text(value: Any) -> str:
    return printable(str(value), MAX_TEXT)


def record_reload(history: History, name: str, old_version: Any, new_version: Any, ok: bool,
                  error: Any = None, duration_s: float = 0.0) -> ReloadEvent:
    """Add one reload to *history* and count it; returns the event."""
    event = ReloadEvent(_text(name), None if old_version is None else _text(old_version),
                        None if new_version is None else _text(new_version), bool(ok),
                        None if error is None else _text(error), round(float(duration_s), 6), time.time())
    history.reloads.append(event)
    counts = history.counts.get(event.name)
    if counts is None:
        if len(history.counts) >= MAX_NAMES:
            del history.counts[next(iter(history.counts))]
        counts = history.counts[event.name] = [0, 0]
    counts[0 if ok else 1] += 1
    return event


_T = TypeVar("_T")


async def timed_reload(history: History, name: str, old_version: Any, reload: Awaitable[_T],
                       new_version: Callable[[], Any]) -> _T:
    """Await *reload* and record it, worked or failed, with how long it took; its result or error passes on.

    :param old_version: the version serving before; None when no plugin has the name (no reload to record).
    :param new_version: called after the reload worked: the version serving now.
    """
    started = time.perf_counter()
    try:
        result = await reload
    except BaseException as exc:
        if old_version is not None:
            record_reload(history, name, old_version, None, False, f"{type(exc).__name__}: {exc}",
                          time.perf_counter() - started)
        raise
    record_reload(history, name, old_version, new_version(), True, None, time.perf_counter() - started)
    return result


def record_error(history: History, plugin: str, hook: str, error: Any) -> PluginErrorEvent:
    """Add one plugin error to *history*; returns the event."""
    event = PluginErrorEvent(_text(plugin), _text(hook), _text(error), time.time())
    history.errors.append(event)
    return event


def reload_history(history: History) -> list[dict[str, Any]]:
    """The reloads kept, newest first, as JSON-safe dicts."""
    return [e._asdict() for e in reversed(history.reloads)]


def recent_errors(history: History) -> list[dict[str, Any]]:
    """The plugin errors kept, newest first, as JSON-safe dicts."""
    return [e._asdict() for e in reversed(history.errors)]


def reload_counts(history: History) -> dict[str, dict[str, int]]:
    """Per plugin, the reloads that worked (``ok``) and failed (``failed``)."""
    return {name: {"ok": c[0], "failed": c[1]} for name, c in sorted(history.counts.items())}


# -- plugin errors from the core's log -------------------------------------------------------------

_HOOK = re.compile(r"raised in ([A-Za-z_]+)")
_WHO = re.compile(r"^plugin '([^']+)'")


def _parse(record: logging.LogRecord) -> tuple[str, str, str] | None:
    """(plugin, hook, error) of a core's plugin-error record; None for the other records."""
    args = record.args
    if record.levelno < logging.ERROR or not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        return None
    msg = record.msg if isinstance(record.msg, str) else ""
    if msg.startswith("plugin %r"):
        plugin = args[0]
        if "raised in %s" in msg and len(args) > 2 and isinstance(args[2], str):
            hook = args[2]
        elif m := _HOOK.search(msg):
            hook = m.group(1)
        elif "shutdown()" in msg:
            hook = "shutdown"
        elif msg.startswith("plugin %r %s failed: %s") and len(args) > 2:
            hook = "initialize" if str(args[2]).startswith("initialize()") else "start"
        else:
            hook = "hook"
    elif msg.startswith("%s raised in its body transform") and (m := _WHO.match(args[0])):
        plugin, hook = m.group(1), "body transform"
    elif msg.startswith("sandboxed plugin %r") and record.name == f"{PLUGIN_ERROR_LOGGERS[0]}.{args[0]}":
        plugin, hook = args[0], "sandbox"       # the host's words about the plugin's helper, on its logger
    else:
        return None
    info = record.exc_info
    if info and info[1] is not None:
        error = f"{type(info[1]).__name__}: {info[1]}"
    else:
        try:
            error = record.getMessage()
        except Exception:       # bad arguments in someone's record: keep the template
            error = msg
    return plugin, hook, error


class _PluginErrors(logging.Filter):
    """Copies the core's plugin errors into every watching History that owns the plugin; lets all pass."""

    def __init__(self) -> None:
        super().__init__()
        self.histories: weakref.WeakSet[History] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            parsed = _parse(record) if self.histories else None
            if parsed is not None:
                plugin, hook, error = parsed
                for history in list(self.histories):
                    if history.owns is None or history.owns(plugin):
                        record_error(history, plugin, hook, error)
        except Exception:       # never break the logging of the error itself
            pass
        return True


_FILTER = _PluginErrors()


def watch_plugin_errors(history: History) -> None:
    """Record the plugin errors the core reports in *history* (for as long as it lives)."""
    for name in PLUGIN_ERROR_LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)
    _FILTER.histories.add(history)


def watch_plugin_logger(name: str) -> None:
    """Also take the sandbox's reports about plugin *name* from its own logger (``covet_pipe.plugins.NAME``)."""
    log = logging.getLogger(f"{PLUGIN_ERROR_LOGGERS[0]}.{name}")
    if _FILTER not in log.filters:
        log.addFilter(_FILTER)
