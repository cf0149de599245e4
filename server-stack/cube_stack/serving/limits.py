"""How long a client may take and how many connections it may hold: one frozen value object.

:class:`ConnectionLimits` is what the serving layer needs from a service's settings (the proxy's
``ProxySettings`` builds one; ``cube-stack up`` serves its auth API with the defaults). Address lists
are CIDRs (a bare address is its own /32 or /128) and are parsed once, here, so a typo stops the start
instead of silently trusting nobody -- or everybody.

:func:`address_key` is the key the per-address cap counts under: an IPv4 address as it is, an IPv6
address by its /64 (one subscriber's prefix: an IPv6 client can pick any of 2^64 addresses in it), and
an IPv4-mapped IPv6 address as the IPv4 address it maps.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from functools import cached_property

from cube_stack.serving.errors import ConnectionLimitsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ConnectionLimits:
    """Timeouts and connection caps of one listening service (every cap per process)."""

    handshake_timeout: float = 10.0  # seconds for a TLS handshake (and a PROXY v2 header) to finish
    header_timeout: float = 15.0  # seconds from connection start or a request's first byte to its last header
    # Bytes of a request line plus headers: past it, 431 and close. A single connection that kept
    # sending headers inside the deadline grew the proxy by 2.3 GB (uvicorn keeps every header).
    max_header_bytes: int = 64 * 1024
    body_timeout: float = 60.0  # seconds from a request's last header to the last byte of its body
    max_connections: int = 2000  # client connections open at once; more are reset at accept
    max_connections_per_address: int = 64  # connections open from one client address (IPv6: one /64)
    trusted_forwarders: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For/-Proto is believed; empty: none
    proxy_protocol_from: tuple[str, ...] = ()  # CIDRs of TCP balancers that must send PROXY v2; empty: none
    proxy_protocol_v1: bool = False  # also accept PROXY v1's text line from those balancers; false: v2 only

    def __post_init__(self) -> None:
        for name in ("handshake_timeout", "header_timeout", "body_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConnectionLimitsError(name, f"expected a positive number of seconds, got {value!r}")
        for name in ("max_connections", "max_connections_per_address", "max_header_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConnectionLimitsError(name, f"expected a whole number of at least 1, got {value!r}")
        if self.max_connections_per_address > self.max_connections:
            raise ConnectionLimitsError(
                "max_connections_per_address",
                f"{self.max_connections_per_address} is more than max_connections ({self.max_connections})",
            )
        _ = self.forwarder_networks, self.balancer_networks  # parse now: fail at start, not per request

    @cached_property
    def forwarder_networks(self) -> tuple[Network, ...]:
        """Return :attr:`trusted_forwarders` parsed."""
        return _networks("trusted_forwarders", self.trusted_forwarders)

    @cached_property
    def balancer_networks(self) -> tuple[Network, ...]:
        """Return :attr:`proxy_protocol_from` parsed."""
        return _networks("proxy_protocol_from", self.proxy_protocol_from)

    def is_balancer(self, host: str) -> bool:
        """Return whether a peer at ``host`` must open its connections with a PROXY v2 header."""
        return _contains(self.balancer_networks, host)


def _networks(name: str, values: tuple[str, ...]) -> tuple[Network, ...]:
    if isinstance(values, str):  # a lone string would be read as a tuple of characters
        raise ConnectionLimitsError(name, f"expected a list of CIDRs, got the string {values!r}")
    out = []
    for value in values:
        if value.strip() == "*":
            raise ConnectionLimitsError(name, "'*' would trust every peer; name CIDRs (0.0.0.0/0 at worst)")
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConnectionLimitsError(
                name, f"{value!r} is not an IP address or CIDR (e.g. 10.0.0.0/8, fd00::/8)"
            ) from None
    return tuple(out)


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _contains(networks: tuple[Network, ...], host: str) -> bool:
    ip = _parse_ip(host)
    return ip is not None and any(ip in network for network in networks)


def address_key(host: str) -> str:
    """Return the key the per-address cap counts ``host`` under (IPv6: its /64)."""
    ip = _parse_ip(host)
    if ip is None:
        return host  # not an IP (a Unix socket peer): count it as given
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)
