"""The SEV-SNP extended-report certificate table, in both directions, and certificate fingerprints.

GHCB spec (AMD pub. 56421): entries of ``{GUID (16 bytes, RFC 4122 byte order), u32 offset, u32 length}``
(little-endian, offsets from the start of the table) ending with an all-zero entry, followed by the
certificates. The agent builds it (:func:`build_cert_table`) from what the host supplied; the client parses it
(:func:`parse_cert_table`); both use the GUIDs here, so each reads exactly what the other writes.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cube_wire.attestation_errors import CertTableMalformedError

__all__ = [
    "GUID_ARK",
    "GUID_ASK",
    "GUID_VCEK",
    "GUID_VLEK",
    "CertTable",
    "build_cert_table",
    "fingerprint",
    "parse_cert_table",
]

GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # the ASK, or the ASVK for a VLEK
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
_ENTRY = struct.Struct("<16sII")


@dataclass(frozen=True)
class CertTable:
    """Certificates that came with a report (DER or PEM each); ``ask`` holds the ASK or the ASVK."""

    vcek: bytes | None = None
    vlek: bytes | None = None
    ask: bytes | None = None
    ark: bytes | None = None
    other: tuple[tuple[str, bytes], ...] = ()  # entries with GUIDs we do not use, as (guid, data)


def parse_cert_table(data: bytes) -> CertTable:
    """Parse an SNP extended-report certificate table ({GUID, u32 offset, u32 length}..., zero entry)."""
    data = bytes(data)
    found: dict[uuid.UUID, bytes] = {}
    other: list[tuple[str, bytes]] = []
    pos = 0
    while True:
        if pos + 24 > len(data):
            raise CertTableMalformedError(
                f"certificate table: entry at offset {pos} runs past the end ({len(data)} bytes); "
                "wanted a terminating all-zero entry"
            )
        entry = data[pos : pos + 24]
        if not any(entry):
            break
        guid = uuid.UUID(bytes=entry[:16])
        offset = int.from_bytes(entry[16:20], "little")
        length = int.from_bytes(entry[20:24], "little")
        if offset + length > len(data) or length == 0:
            raise CertTableMalformedError(
                f"certificate table entry {guid}: offset {offset} + length {length} found, "
                f"wanted a non-empty range inside the {len(data)}-byte table"
            )
        if guid in found:
            raise CertTableMalformedError(f"certificate table entry {guid}: found twice, wanted once")
        blob = data[offset : offset + length]
        if guid in (GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK):
            found[guid] = blob
        else:
            other.append((str(guid), blob))
        pos += 24
    return CertTable(
        vcek=found.get(GUID_VCEK),
        vlek=found.get(GUID_VLEK),
        ask=found.get(GUID_ASK),
        ark=found.get(GUID_ARK),
        other=tuple(other),
    )


def build_cert_table(entries: list[tuple[uuid.UUID, bytes]]) -> bytes:
    """Return a certificate table holding ``entries`` (GUID, DER certificate) in the given order."""
    header_size = _ENTRY.size * (len(entries) + 1)
    header = bytearray()
    body = bytearray()
    for guid, data in entries:
        header += _ENTRY.pack(guid.bytes, header_size + len(body), len(data))
        body += data
    header += bytes(_ENTRY.size)
    return bytes(header + body)


def fingerprint(cert: x509.Certificate) -> str:
    """Return the lower-case hex SHA-256 of a certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
