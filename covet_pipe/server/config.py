"""ServeConfig: the settings of covet-pipe's own listener (``covet-pipe serve``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any, Literal

__all__ = ["ServeConfig"]

KiB = 1024
MiB = 1024 * KiB


def _option(default: Any = None, help: str = "", *, factory: Any = None, group: str = "serve",
            flag: str | None = None, metavar: str | None = None) -> Any:
    """A ServeConfig field with what ``covet-pipe serve`` says of it (its option is made from this)."""
    meta = {"help": help, "group": group, "flag": flag, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ServeConfig:
    """Where to listen, how many processes, and the limits every connection is held to.

    Sizes are in bytes, times in seconds. A request that breaks a limit gets the
    status named beside it and its connection is closed. Each field is also an option
    of ``covet-pipe serve`` (``max_body_bytes`` is ``--max-body-bytes``).
    """

    host: str = _option("127.0.0.1", "address to bind")
    port: int = _option(8000, "port to bind; 0 picks a free one (the bound port is in Listener.port)")
    workers: int = _option(1, "worker processes, each with its own SO_REUSEPORT socket, supervised "
                              "(1: serve in this process)")
    backlog: int = _option(2048, "listen(2) backlog", group="limits")
    max_header_bytes: int = _option(64 * KiB, "request line plus headers larger than this: 431 (414 when the "
                                                 "request target alone is)", group="limits")
    max_body_bytes: int = _option(16 * MiB, "request body larger than this (declared or received): 413",
                                  group="limits")
    header_timeout: float = _option(10.0, "a request's head (line and headers) not complete this long after "
                                          "it began: 408", group="limits")
    body_timeout: float = _option(30.0, "a request body that stops arriving for this long while it is "
                                        "expected: 408", group="limits")
    keepalive_timeout: float = _option(5.0, "an idle keep-alive connection is closed after this long",
                                       group="limits")
    shutdown_timeout: float = _option(30.0, "on SIGTERM/SIGINT, in-flight requests get this long to finish "
                                            "before connections are cut", group="limits")
    max_detect_bytes: int = _option(8 * KiB, "the protocol chain gives up (closes the connection) when no "
                                             "protocol claims this many bytes", group="limits")
    trusted_proxies: list[str] = _option(help="a peer whose PROXY protocol header is believed: an IP or CIDR "
                                              "(repeatable, or comma-separated); others keep their own address",
                                         factory=list, flag="--trusted-proxy", metavar="IP/CIDR")
    loop: Literal["uvloop", "asyncio"] = _option("uvloop", "the event loop (uvloop falls back to asyncio when "
                                                           "uvloop is missing)")
    access_log: bool = _option(False, "one log line per response on the covet_pipe.access logger")
    lifespan: Literal["auto", "on", "off"] = _option("auto", "run the app's ASGI lifespan: auto (tolerate apps "
                                                             "without it), on (fail if it fails), off")
    require_host: bool = _option(True, "an HTTP/1.1 request without a Host header: 400, as RFC 9112 §3.2 "
                                       "requires (--no-require-host serves it, as uvicorn does)")
    root_path: str = _option("", "ASGI root_path (the app is mounted below this prefix)")
    ws_max_size: int = _option(16 * MiB, "largest websocket message accepted (bytes)", group="limits")
    ws_ping_interval: float = _option(20.0, "a websocket ping every this many seconds once accepted (0: never)",
                                      group="limits")
    ws_ping_timeout: float = _option(20.0, "a websocket whose pong is this late is closed with 1011 (0: never)",
                                     group="limits")
    admin: str | None = _option(None, "serve the admin API (list, health, reload) on its own port: HOST:PORT, "
                                      "or PORT for 127.0.0.1:PORT (needs --admin-token-file or "
                                      "COVET_PIPE_ADMIN_TOKEN)", group="admin", metavar="HOST:PORT")
    admin_token_file: str | None = _option(None, "the admin API's bearer token is this file's first line "
                                                 "(else the COVET_PIPE_ADMIN_TOKEN environment variable)",
                                           group="admin", metavar="FILE")

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
        if self.admin is not None:
            self.admin_address()
        if self.admin_token_file is not None and not isinstance(self.admin_token_file, str):
            raise ValueError(f"ServeConfig.admin_token_file: expected a path, got {self.admin_token_file!r}")

    def admin_address(self) -> tuple[str, int] | str:
        """Where the admin API listens: ``(host, port)``, or a Unix socket's path (``unix:PATH``)."""
        value = self.admin
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"ServeConfig.admin: expected HOST:PORT, PORT or unix:PATH, got {value!r}")
        value = value.strip()
        if value.startswith("unix:"):
            if not value[5:]:
                raise ValueError("ServeConfig.admin: unix: needs the socket's path, e.g. unix:/run/covet/admin.sock")
            return value[5:]
        host, sep, port = value.rpartition(":")
        host = host.strip("[]") if sep else ""
        try:
            number = int(port)
        except ValueError:
            number = -1
        if not 0 <= number <= 65535:
            raise ValueError(f"ServeConfig.admin: {value!r} has no port; expected HOST:PORT (e.g. "
                             "127.0.0.1:9901) or a port alone")
        return host or "127.0.0.1", number

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
