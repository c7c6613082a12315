"""The exceptions covet-pipe raises: one tree, each naming the plugin it concerns."""

from __future__ import annotations

__all__ = [
    "CovetPipeError",
    "ClientDisconnected",
    "PluginError",
    "PluginValidationError",
    "DependencyError",
    "DependencyCycleError",
    "PluginLoadError",
    "StrictError",
    "PluginNotFoundError",
    "ServiceNotFoundError",
    "ConfigError",
    "ResponseStartedError",
]


class CovetPipeError(Exception):
    """Base of every covet-pipe error."""


class ClientDisconnected(CovetPipeError):
    """The client went away while a plugin read the request body (``await request.body()``)."""


class ConfigError(CovetPipeError, ValueError):
    """A configuration value is wrong; the message names the field and a correct value."""

    def __init__(self, message: str, *, field: str | None = None, path: str | None = None):
        super().__init__(message)
        #: the configuration field at fault
        self.field = field
        #: the file the value came from, when it came from one
        self.path = path


class PluginError(CovetPipeError):
    """Something is wrong with one plugin; ``plugin_name`` and ``path`` say which."""

    def __init__(self, message: str, *, plugin_name: str | None = None, path: str | None = None):
        super().__init__(message)
        #: the plugin concerned (None when it has no usable name)
        self.plugin_name = plugin_name
        #: the file it was loaded from, if any
        self.path = path


class PluginValidationError(PluginError, ValueError):
    """A plugin's declaration is invalid: its name, version, priority or dependencies."""


class DependencyError(PluginError):
    """A dependency is missing or its version does not satisfy the constraint."""


class DependencyCycleError(DependencyError):
    """Plugins depend on each other in a cycle; ``cycle`` lists it, first name repeated last."""

    def __init__(self, message: str, *, cycle: list[str], plugin_name: str | None = None):
        super().__init__(message, plugin_name=plugin_name)
        self.cycle = cycle


class PluginLoadError(PluginError):
    """A plugin file, package or entry point could not be loaded."""


class StrictError(PluginError):
    """``PluginConfig(strict=True)``: plugins failed, so covet-pipe refuses to start.

    The message names every failure; ``failures`` maps each plugin (or file) to its reason.
    """

    def __init__(self, what: str, failures: dict[str, str]) -> None:
        lines = "".join(f"\n  {why}" if why.startswith(where) else f"\n  {where}: {why}"
                        for where, why in failures.items())
        super().__init__(f"{what}: {len(failures)} plugin(s) failed; fix them, or drop strict to serve with "
                         f"fail-closed stand-ins in their place:{lines}")
        #: plugin name or file -> why it failed
        self.failures = dict(failures)


class PluginNotFoundError(PluginError, LookupError):
    """No plugin by that name (or of that kind) is registered."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0]) if self.args else ""


class ServiceNotFoundError(PluginError, LookupError):
    """No service by that name; the message lists those available."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ResponseStartedError(PluginError, RuntimeError):
    """A plugin changed a response whose start had already gone to the server (or a request the
    app already had): the change could not reach anyone, so it is refused rather than lost.

    ``plugin_name`` and ``hook`` say which plugin and hook got that response (``plugin_name`` is
    None when several plugins' hooks got it; the message names them all).
    """

    def __init__(self, message: str, *, plugin_name: str | None = None, hook: str | None = None) -> None:
        super().__init__(message, plugin_name=plugin_name)
        #: the hook that got the response ("process_response", "process_request", "body transform")
        self.hook = hook
