"""PluginContext: what a plugin's ``initialize`` receives, and the service locator."""

from __future__ import annotations

import logging
from typing import Any, Iterable, Protocol

from covet_pipe._core import RequestContext
from covet_pipe.errors import ServiceNotFoundError
from covet_pipe.storage_counts import StorageCounts

__all__ = ["PluginContext", "RequestContext", "Services"]


class Records(Protocol):
    """Where Services finds the plugins: the registry's records by name, and all of them."""

    def get(self, name: str) -> Any: ...

    def records(self) -> Iterable[Any]: ...


class Services:
    """Finds services by name: ones the host provided, then plugins' ``service``."""

    def __init__(self, registry: Records) -> None:
        self._registry = registry
        self._provided: dict[str, Any] = {}
        #: the counting views storage engines are handed out through (covet_pipe_storage_calls_total)
        self.storage = StorageCounts()

    def provide(self, name: str, service: Any) -> None:
        """Offer *service* under *name* to every plugin."""
        self._provided[name] = service

    def get_service(self, name: str) -> Any:
        """The service called *name*.

        A plugin is its own service unless it sets a ``service`` attribute.
        :raises ServiceNotFoundError: naming the services available.
        """
        if name in self._provided:
            return self._provided[name]
        record = self._registry.get(name)
        if record is not None and record.state != "failed":
            service = getattr(record.plugin, "service", None)
            if service is None:
                return self.storage.view(name, record.plugin) if "storage" in record.kinds else record.plugin
            return service
        available = sorted(set(self._provided) | {
            r.name for r in self._registry.records() if r.state != "failed"})
        why = f"plugin {name!r} failed: {record.error}" if record is not None else f"no service {name!r}"
        raise ServiceNotFoundError(
            f"{why}; available services: {', '.join(available) or 'none'}; register a plugin "
            f"named {name!r} or call manager.provide_service({name!r}, obj)",
            plugin_name=name,
        )


class PluginContext:
    """Handed to ``Plugin.initialize``: the plugin's settings, logger and services."""

    def __init__(self, name: str, services: Services, config: dict[str, Any] | None = None) -> None:
        #: the plugin this context belongs to
        self.plugin_name = name
        #: settings for this plugin (``PluginConfig.plugin_settings`` or the manifest's [config])
        self.config = dict(config or {})
        #: a logger named for the plugin
        self.logger = logging.getLogger(f"covet_pipe.plugins.{name}")
        self._services = services

    def get_service(self, name: str) -> Any:
        """A service by name: a plugin (or its ``service``), or one the host provided."""
        return self._services.get_service(name)

    def provide_service(self, name: str, service: Any) -> None:
        """Offer a service to the other plugins."""
        self._services.provide(name, service)

    def __repr__(self) -> str:
        return f"<PluginContext {self.plugin_name}>"
