"""PROXY protocol v1 and v2: a protocol layer that unwraps the proxy's header and hands on.

A load balancer (HAProxy, AWS NLB, nginx ``proxy_protocol``) puts a PROXY header
before the client's bytes. This layer consumes it, records what it says on the
connection (``conn.facts["proxy"]``) and passes the rest down the protocol chain.
Requests show the proxied client address in ``scope["client"]`` **only** when
the socket peer is one of ``trusted_proxies`` (addresses or CIDR networks); from
any other peer the header is consumed and recorded but the peer's own address
stays, so a client cannot forge its address by sending a header itself.

Configuration (``PluginConfig.plugin_settings["proxy_protocol"]`` or the
constructor): ``trusted_proxies`` (default: none, taken from the listener's
``ServeConfig.trusted_proxies`` when the plugin has none), ``required``
(default False: a connection without a header passes through untouched; True:
such a connection is closed).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from typing import Any, Iterable

from covet_pipe.plugin import ProtocolPlugin
from covet_pipe.protocol import MATCH, NEED_MORE, NO, ConnectionInfo, ProtocolError

__all__ = ["ProxyProtocol", "V2_SIGNATURE"]

#: the name it has always logged under, the plugin's module covet_pipe.builtin.proxy_protocol
log = logging.getLogger("covet_pipe.builtin.proxy_protocol")

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107                 # the spec's longest v1 line, CRLF included
V2_MAX_PAYLOAD = 4096        # addresses + TLVs; the spec allows 65535, real proxies send < 300

_V2_FAMILIES = {
    0x11: ("TCP4", socket.AF_INET, 12), 0x12: ("UDP4", socket.AF_INET, 12),
    0x21: ("TCP6", socket.AF_INET6, 36), 0x22: ("UDP6", socket.AF_INET6, 36),
    0x31: ("UNIX", None, 216), 0x32: ("UNIX", None, 216),
}


def _networks(items: Iterable[str]) -> tuple[Any, ...]:
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ValueError(f"proxy_protocol: trusted_proxies entry {item!r} is not an IP address or "
                             "CIDR network (write '10.0.0.5' or '10.0.0.0/8')") from None
    return tuple(nets)


class ProxyProtocol(ProtocolPlugin):
    """PROXY protocol v1/v2 layer: the real client address from a trusted load balancer."""

    name = "proxy_protocol"
    version = "1.0.0"
    protocol_name = "proxy"
    layer = True
    priority = 10

    def __init__(self, trusted_proxies: Iterable[str] | None = None, required: bool = False) -> None:
        self._explicit = trusted_proxies is not None
        self.trusted = _networks(trusted_proxies or ())
        self.required = required

    async def initialize(self, ctx: Any) -> None:
        cfg = getattr(ctx, "config", None) or {}
        if "trusted_proxies" in cfg:
            self.trusted = _networks(cfg["trusted_proxies"])
            self._explicit = True
        if "required" in cfg:
            self.required = bool(cfg["required"])

    def supported_protocols(self) -> list[str]:
        return ["proxy-v1", "proxy-v2"]

    # -- detection ----------------------------------------------------------

    def detect(self, data: bytes) -> str:
        if data[:6] == V1_PREFIX or data[:12] == V2_SIGNATURE:
            return MATCH
        n = len(data)
        if (n < 6 and V1_PREFIX.startswith(data)) or (n < 12 and V2_SIGNATURE.startswith(data)):
            return NEED_MORE
        if self.required:
            raise ProtocolError("proxy_protocol: the connection did not start with a PROXY header "
                                "and required=True", plugin_name=self.name)
        return NO

    def unwrap(self, data: bytes, conn: ConnectionInfo) -> int | None:
        if data[:12] == V2_SIGNATURE:
            parsed = _parse_v2(data)
        else:
            parsed = _parse_v1(data)
        if parsed is None:
            return None
        used, facts = parsed
        facts["trusted"] = self._trusts(conn.peer)
        conn.facts["proxy"] = facts
        source = facts.get("source")
        if facts["trusted"] and source is not None:
            conn.client = source
            if facts.get("destination") is not None:
                conn.facts["proxy_destination"] = facts["destination"]
        elif source is not None:
            log.debug("proxy_protocol: header from untrusted peer %s ignored (claims %s)", conn.peer, source)
        return used

    def _trusts(self, peer: tuple[str, int] | None) -> bool:
        if peer is None:
            return False
        try:
            addr = ipaddress.ip_address(peer[0])
        except ValueError:
            return False
        mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
        if mapped is not None:
            addr = mapped
        return any(addr in net for net in self._trusted())

    def _trusted(self) -> tuple[Any, ...]:
        return self.trusted

    def use_server_config(self, config: Any) -> None:
        """Take ``trusted_proxies`` from the listener's config when none was given to the plugin."""
        if not self._explicit and getattr(config, "trusted_proxies", None):
            self.trusted = _networks(config.trusted_proxies)


def _parse_v1(data: bytes) -> tuple[int, dict[str, Any]] | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProtocolError("proxy_protocol: PROXY v1 line longer than 107 bytes or without CRLF",
                                plugin_name="proxy_protocol")
        return None
    line = data[:end]
    try:
        parts = line.decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProtocolError("proxy_protocol: PROXY v1 line is not ASCII", plugin_name="proxy_protocol") from None
    used = end + 2
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return used, {"version": 1, "command": "PROXY", "family": "UNKNOWN", "source": None,
                      "destination": None}
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProtocolError(f"proxy_protocol: malformed PROXY v1 line {line[:64]!r}: expected "
                            "'PROXY TCP4|TCP6 src dst sport dport'", plugin_name="proxy_protocol")
    family = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
    src, dst = _ip(parts[2], family), _ip(parts[3], family)
    sport, dport = _port(parts[4]), _port(parts[5])
    return used, {"version": 1, "command": "PROXY", "family": parts[1],
                  "source": (src, sport), "destination": (dst, dport)}


def _ip(text: str, family: int) -> str:
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        raise ProtocolError(f"proxy_protocol: {text[:48]!r} is not a valid address for its family",
                            plugin_name="proxy_protocol") from None


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0") or int(text) > 65535:
        raise ProtocolError(f"proxy_protocol: {text[:8]!r} is not a port number", plugin_name="proxy_protocol")
    return int(text)


def _parse_v2(data: bytes) -> tuple[int, dict[str, Any]] | None:
    if len(data) < 16:
        return None
    ver_cmd, fam, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        raise ProtocolError(f"proxy_protocol: PROXY v2 header with version {ver_cmd >> 4}",
                            plugin_name="proxy_protocol")
    command = ver_cmd & 0x0F
    if command not in (0, 1):
        raise ProtocolError(f"proxy_protocol: PROXY v2 command {command} is neither LOCAL nor PROXY",
                            plugin_name="proxy_protocol")
    if length > V2_MAX_PAYLOAD:
        raise ProtocolError(f"proxy_protocol: PROXY v2 payload of {length} bytes is over the "
                            f"{V2_MAX_PAYLOAD}-byte limit", plugin_name="proxy_protocol")
    if len(data) < 16 + length:
        return None
    payload = data[16:16 + length]
    used = 16 + length
    facts: dict[str, Any] = {"version": 2, "command": "LOCAL" if command == 0 else "PROXY",
                             "family": "UNSPEC", "source": None, "destination": None, "tlvs": {}}
    if command == 0:
        return used, facts        # LOCAL: a health check from the proxy itself; the peer stays
    known = _V2_FAMILIES.get(fam)
    if known is None:
        return used, facts        # AF_UNSPEC or unknown: addresses are ignored, per the spec
    label, family, size = known
    if length < size:
        raise ProtocolError(f"proxy_protocol: PROXY v2 {label} header needs {size} address bytes, "
                            f"has {length}", plugin_name="proxy_protocol")
    facts["family"] = label
    if family is not None:
        alen = 4 if family == socket.AF_INET else 16
        src = socket.inet_ntop(family, payload[:alen])
        dst = socket.inet_ntop(family, payload[alen:2 * alen])
        sport, dport = struct.unpack_from("!HH", payload, 2 * alen)
        facts["source"], facts["destination"] = (src, sport), (dst, dport)
    facts["tlvs"] = _tlvs(payload[size:])
    return used, facts


def _tlvs(buf: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = 0
    while i + 3 <= len(buf):
        kind, n = buf[i], struct.unpack_from("!H", buf, i + 1)[0]
        if i + 3 + n > len(buf):
            raise ProtocolError("proxy_protocol: PROXY v2 TLV runs past the header",
                                plugin_name="proxy_protocol")
        out[kind] = bytes(buf[i + 3:i + 3 + n])
        i += 3 + n
    return out
