"""ServeConfig: the settings of covet-pipe's own listener (``covet-pipe serve``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["ServeConfig"]

KiB = 1024
MiB = 1024 * KiB


@dataclass
class ServeConfig:
    """Where to listen, how many processes, and the limits every connection is held to.

    Sizes are in bytes, times in seconds. A request that breaks a limit gets the
    status named beside it and its connection is closed.
    """

    #: address to bind (``covet-pipe serve --host``)
    host: str = "127.0.0.1"
    #: port to bind; 0 picks a free one (the bound port is in ``Listener.port``)
    port: int = 8000
    #: worker processes, each with its own SO_REUSEPORT socket (1: serve in this process)
    workers: int = 1
    #: listen(2) backlog
    backlog: int = 2048
    #: request line plus headers larger than this: 431
    max_header_bytes: int = 64 * KiB
    #: request body larger than this (declared or received): 413
    max_body_bytes: int = 16 * MiB
    #: a request's head (line and headers) not complete this long after it began: 408
    header_timeout: float = 10.0
    #: a request body that stops arriving for this long while it is expected: 408
    body_timeout: float = 30.0
    #: an idle keep-alive connection is closed after this long
    keepalive_timeout: float = 5.0
    #: on SIGTERM/SIGINT, in-flight requests get this long to finish before connections are cut
    shutdown_timeout: float = 30.0
    #: the protocol chain gives up (closes the connection) when no protocol claims this many bytes
    max_detect_bytes: int = 8 * KiB
    #: peers whose PROXY protocol header is believed (IPs or CIDRs); others keep their own address
    trusted_proxies: list[str] = field(default_factory=list)
    #: the event loop: "uvloop" (falls back to asyncio when uvloop is missing) or "asyncio"
    loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: one log line per response on the "covet_pipe.access" logger
    access_log: bool = False
    #: run the app's ASGI lifespan: "auto" (tolerate apps without it), "on" (fail if it fails), "off"
    lifespan: Literal["auto", "on", "off"] = "auto"
    #: ASGI root_path (the app is mounted below this prefix)
    root_path: str = ""
    #: largest websocket message accepted (bytes)
    ws_max_size: int = 16 * MiB
    #: a websocket ping every this many seconds once accepted (0: never)
    ws_ping_interval: float = 20.0
    #: a websocket whose pong is this late is closed with 1011 (0: never)
    ws_ping_timeout: float = 20.0

    def __post_init__(self) -> None:
        self._check_positive("port", self.port, allow_zero=True)
        if self.port > 65535:
            raise ValueError(f"ServeConfig.port: expected 0..65535, got {self.port}")
        for name in ("workers", "backlog", "max_header_bytes", "max_body_bytes", "max_detect_bytes",
                     "ws_max_size"):
            self._check_positive(name, getattr(self, name))
        for name in ("header_timeout", "body_timeout", "keepalive_timeout", "shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ServeConfig.{name}: expected a number of seconds > 0, got {value!r}")
        for name in ("ws_ping_interval", "ws_ping_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"ServeConfig.{name}: expected a number of seconds >= 0 (0: off), got {value!r}")
        if self.loop not in ("uvloop", "asyncio"):
            raise ValueError(f"ServeConfig.loop: expected 'uvloop' or 'asyncio', got {self.loop!r}")
        if self.lifespan not in ("auto", "on", "off"):
            raise ValueError(f"ServeConfig.lifespan: expected 'auto', 'on' or 'off', got {self.lifespan!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ValueError(f"ServeConfig.root_path: expected a path such as '/api' (a leading slash, "
                             f"no trailing one), got {self.root_path!r}")
        if isinstance(self.trusted_proxies, str):
            self.trusted_proxies = [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]
        for entry in self.trusted_proxies:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"ServeConfig.trusted_proxies: {entry!r} is not an IP address or CIDR; "
                                 "use e.g. '10.0.0.1' or '10.0.0.0/8'") from None

    @staticmethod
    def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
        low = 0 if allow_zero else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"ServeConfig.{name}: expected an integer >= {low}, got {value!r}")

    @classmethod
    def from_options(cls, **options: Any) -> ServeConfig:
        """A ServeConfig from keyword options, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown serve option(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**options)
