r"""The PROXY protocol, versions 2 and 1: what a TCP-passthrough balancer says about the client.

A balancer puts a header before the bytes of each connection, naming the client it came from
(haproxy's proxy-protocol.txt: section 2.2 for the binary v2, 2.1 for the text v1).

Pure: bytes in, a :class:`ProxyHeader` out, and the other direction for tests and benches. The reader
(:mod:`cube_stack.serving.listener`) never reads a byte past the header, which belongs to TLS:

* v2: it reads the fixed 16-byte prefix, asks :func:`parse_prefix` how long the rest is, reads exactly
  that much and hands both to :func:`parse_header`;
* v1, only where enabled (``proxy_protocol_v1``), a text line such as
  ``PROXY TCP4 203.0.113.7 10.0.0.1 51234 8900\r\n`` of at most 107 bytes: it has no length, so the
  reader takes it in pieces no longer than :func:`v1_bytes_still_due` promises are still part of it
  (the shortest line the bytes so far can start), then byte by byte up to ``\r\n``, and hands it to
  :func:`parse_v1`. The versions differ within their first 12 bytes (:data:`SIGNATURE_BYTES`), fewer
  than the shortest v1 line has.

Layout::

    12 bytes  signature  \r\n\r\n\0\r\nQUIT\n
     1 byte   version (high nibble, must be 2) | command (low nibble: 0 LOCAL, 1 PROXY)
     1 byte   family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) | transport (low: 1 STREAM)
     2 bytes  length of what follows, big-endian
    INET:  source 4, destination 4, source port 2, destination port 2  (then TLVs, ignored)
    INET6: source 16, destination 16, source port 2, destination port 2 (then TLVs, ignored)

LOCAL (a balancer's own health check), PROXY with family UNSPEC and v1's ``UNKNOWN`` keep the
connection's own peer address, as the specification says; UNIX and datagram families are refused (a TCP
balancer never sends them).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from cube_stack.serving.errors import ProxyHeaderError

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
SIGNATURE_BYTES = 12  # read first: enough to tell v2 from v1, less than any v1 line
V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107  # the longest v1 line, "\r\n" included (proxy-protocol.txt 2.1)
# The shortest complete line for each protocol word: where a v1 reader may read up to at once.
_V1_SHORTEST = {
    b"TCP4": len(b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n"),
    b"TCP6": len(b"PROXY TCP6 :: :: 0 0\r\n"),
}
_V1_SHORTEST_ANY = len(b"PROXY UNKNOWN\r\n")
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


def is_v1(start: bytes) -> bool:
    """Return whether a header's first bytes are those of a v1 line (``PROXY ``)."""
    return start.startswith(V1_PREFIX)


def may_start_header(start: bytes, *, v1: bool = False) -> bool:
    """Return whether ``start`` can still begin a v2 header (or, with ``v1``, a v1 line)."""
    if SIGNATURE.startswith(start[: len(SIGNATURE)]):
        return True
    return v1 and V1_PREFIX.startswith(start[: len(V1_PREFIX)])


def v1_bytes_still_due(line: bytes) -> int:
    """Return how many more bytes the v1 line begun by ``line`` surely has (0: it may end here)."""
    if line.endswith(b"\r\n"):
        return 0
    word = line[len(V1_PREFIX) : len(V1_PREFIX) + 4]
    shortest = _V1_SHORTEST.get(word, _V1_SHORTEST_ANY)
    end = 1 if line.endswith(b"\r") else 2  # what is left of the CRLF
    due = max(shortest - len(line), end)
    if word in _V1_SHORTEST:  # six fields in all; each one not begun yet needs a space and a character
        due = max(due, 2 * (6 - len(line.split(b" "))) + end)
    return due


def parse_v1(line: bytes) -> ProxyHeader:
    """Return what a whole v1 line (CRLF included) says about the client."""

    def bad(what: str) -> ProxyHeaderError:
        return ProxyHeaderError(f"PROXY v1 header: {what}", code="serving.proxy_header_v1")

    if len(line) > V1_MAX_BYTES:
        raise bad(f"longer than {V1_MAX_BYTES} bytes")
    if not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise bad("not a line starting 'PROXY ' and ending CRLF")
    try:
        fields = line[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise bad("not ASCII") from None
    if fields[1] == "UNKNOWN":  # the balancer does not know (or will not say): keep the peer
        return ProxyHeader(None, None)
    if len(fields) != 6 or fields[1] not in ("TCP4", "TCP6"):
        raise bad("expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT' or 'PROXY UNKNOWN'")
    version = 4 if fields[1] == "TCP4" else 6
    try:
        source, destination = ipaddress.ip_address(fields[2]), ipaddress.ip_address(fields[3])
    except ValueError:
        raise bad("an address is not an IP address") from None
    if source.version != version or destination.version != version:
        raise bad(f"addresses are not IPv{version}, as {fields[1]} says")
    ports = []
    for text in fields[4:]:
        if not text.isdigit() or not text.isascii() or len(text) > 5 or int(text) > 65535:
            raise bad("a port is not a number from 0 to 65535")
        ports.append(int(text))
    return ProxyHeader((str(source), ports[0]), (str(destination), ports[1]))


def build_v1(source: Address | None, destination: Address | None = None) -> bytes:
    """Return a v1 line naming ``source`` (``UNKNOWN`` when None), for tests and benches."""
    if source is None:
        return b"PROXY UNKNOWN\r\n"
    src = ipaddress.ip_address(source[0])
    dst = destination or (str(type(src)(0)), 0)
    word = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {word} {source[0]} {dst[0]} {source[1]} {dst[1]}\r\n".encode("ascii")
