r"""The PROXY protocol, version 2 only: what a TCP-passthrough balancer says about the client.

A balancer puts a binary header before the bytes of each connection, naming the client it came from
(haproxy's proxy-protocol.txt, section 2.2).

Pure: bytes in, a :class:`ProxyHeader` out, and the other direction for tests and benches. The reader
(:mod:`cube_stack.serving.listener`) reads the fixed 16-byte prefix, asks :func:`parse_prefix` how long
the rest is, reads exactly that much -- never a byte past the header, which belongs to TLS -- and hands
both to :func:`parse_header`. Version 1 (the text form) is refused: it has no length, so reading it
exactly means reading byte by byte, and every balancer that speaks v1 speaks v2.

Layout::

    12 bytes  signature  \r\n\r\n\0\r\nQUIT\n
     1 byte   version (high nibble, must be 2) | command (low nibble: 0 LOCAL, 1 PROXY)
     1 byte   family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) | transport (low: 1 STREAM)
     2 bytes  length of what follows, big-endian
    INET:  source 4, destination 4, source port 2, destination port 2  (then TLVs, ignored)
    INET6: source 16, destination 16, source port 2, destination port 2 (then TLVs, ignored)

LOCAL (a balancer's own health check) and PROXY with family UNSPEC keep the connection's own peer
address, as the specification says; UNIX and datagram families are refused (a TCP balancer never sends
them).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cube_stack.serving.errors import ProxyHeaderError

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
PREFIX_BYTES = 16  # signature, version/command, family/transport, length
MAX_BODY_BYTES = 2048  # addresses plus TLVs; real balancers send well under 300
_LOCAL, _PROXY = 0x0, 0x1
_UNSPEC, _TCP4, _TCP6 = 0x00, 0x11, 0x21
_ADDRESS_BYTES = {_TCP4: 12, _TCP6: 36}

Address = tuple[str, int]


@dataclass(frozen=True)
class ProxyHeader:
    """What a PROXY v2 header said: the client's address, or None to keep the connection's own peer."""

    source: Address | None
    destination: Address | None


def parse_prefix(prefix: bytes) -> int:
    """Return the number of header bytes after the 16-byte ``prefix``; refuse anything but v2."""
    if len(prefix) != PREFIX_BYTES:
        raise ProxyHeaderError(
            f"PROXY header prefix: expected {PREFIX_BYTES} bytes, got {len(prefix)}",
            code="serving.proxy_header_truncated",
        )
    if prefix[:12] != SIGNATURE:
        raise ProxyHeaderError(
            "no PROXY v2 signature where the balancer's header must be", code="serving.proxy_header_signature"
        )
    version, command = prefix[12] >> 4, prefix[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(
            f"PROXY header version {version}, wanted 2", code="serving.proxy_header_version"
        )
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(
            f"PROXY header command {command:#x}, wanted LOCAL (0) or PROXY (1)",
            code="serving.proxy_header_command",
        )
    (length,) = struct.unpack("!H", prefix[14:16])
    if length > MAX_BODY_BYTES:
        raise ProxyHeaderError(
            f"PROXY header of {length} bytes after the prefix, at most {MAX_BODY_BYTES} accepted",
            code="serving.proxy_header_length",
        )
    if command == _PROXY and prefix[13] in _ADDRESS_BYTES and length < _ADDRESS_BYTES[prefix[13]]:
        raise ProxyHeaderError(
            f"PROXY header of {length} bytes cannot hold family {prefix[13]:#04x}'s addresses "
            f"({_ADDRESS_BYTES[prefix[13]]} bytes)",
            code="serving.proxy_header_length",
        )
    return int(length)


def parse_header(prefix: bytes, body: bytes) -> ProxyHeader:
    """Return what a whole header (``prefix`` and the ``body`` it announced) says about the client."""
    length = parse_prefix(prefix)
    if len(body) != length:
        raise ProxyHeaderError(
            f"PROXY header body: expected {length} bytes, got {len(body)}",
            code="serving.proxy_header_truncated",
        )
    command, family = prefix[12] & 0x0F, prefix[13]
    if command == _LOCAL:
        return ProxyHeader(None, None)
    if family == _UNSPEC:
        return ProxyHeader(None, None)
    if family == _TCP4:
        source = str(ipaddress.IPv4Address(body[0:4]))
        destination = str(ipaddress.IPv4Address(body[4:8]))
        ports = struct.unpack("!HH", body[8:12])
    elif family == _TCP6:
        source = str(ipaddress.IPv6Address(body[0:16]))
        destination = str(ipaddress.IPv6Address(body[16:32]))
        ports = struct.unpack("!HH", body[32:36])
    else:
        raise ProxyHeaderError(
            f"PROXY header family/transport {family:#04x}, wanted TCP over IPv4 (0x11) or IPv6 (0x21)",
            code="serving.proxy_header_family",
        )
    return ProxyHeader((source, ports[0]), (destination, ports[1]))


def build_header(source: Address | None, destination: Address | None = None) -> bytes:
    """Return a v2 header naming ``source`` (PROXY over TCP), or a LOCAL one when ``source`` is None."""
    if source is None:
        return SIGNATURE + bytes([0x20 | _LOCAL, _UNSPEC]) + struct.pack("!H", 0)
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0]) if destination else type(src)(0)
    if src.version != dst.version:
        raise ValueError("source and destination must be of one IP version")
    family = _TCP4 if src.version == 4 else _TCP6
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1] if destination else 0)
    return SIGNATURE + bytes([0x20 | _PROXY, family]) + struct.pack("!H", len(body)) + body
