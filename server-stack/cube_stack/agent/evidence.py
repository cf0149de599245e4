"""What an attestation provider returns, the interface every provider implements, and the certificate table.

A provider turns 64 bytes of REPORT_DATA into :class:`Evidence`: the raw 0x4A0-byte ATTESTATION_REPORT and,
when the host supplied one, the extended-report certificate table (GHCB spec, pub. 56421; the format is in
:mod:`cube_wire.certtable`, which the client parses too). ``get_report`` blocks (an ioctl, configfs I/O,
RSA/ECDSA signing): the agent calls it from a worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cube_stack.agent.errors import EvidenceError
from cube_wire.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, GUID_VLEK, build_cert_table
from cube_wire.report import REPORT_SIZE

REPORT_DATA_SIZE = 64
_ENTRY = struct.Struct("<16sII")

__all__ = [
    "GUID_ARK",
    "GUID_ASK",
    "GUID_VCEK",
    "GUID_VLEK",
    "REPORT_DATA_SIZE",
    "AttestationProvider",
    "Evidence",
    "build_cert_table",
    "check_report",
    "check_report_data",
    "trim_cert_table",
]


@dataclass(frozen=True)
class Evidence:
    """One attestation: the raw report (0x4A0 bytes) and the GUID certificate table, or None without one."""

    report: bytes
    certificates: bytes | None = None


@runtime_checkable
class AttestationProvider(Protocol):
    """A source of SEV-SNP reports: the kernel's configfs-tsm, /dev/sev-guest, or the simulated signer."""

    @property
    def name(self) -> str:
        """Return the provider's name in the attestation document ("configfs-tsm", "sev-guest", ...)."""
        ...

    @property
    def simulated(self) -> bool:
        """Return True when reports are signed by a simulated chain rather than by AMD's firmware."""
        ...

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a report carrying ``report_data`` (64 bytes) and its certificates; this may block."""
        ...


def check_report_data(report_data: bytes) -> bytes:
    """Return ``report_data`` as bytes, or raise EvidenceError unless it is exactly 64 bytes."""
    if not isinstance(report_data, bytes | bytearray) or len(report_data) != REPORT_DATA_SIZE:
        found = f"{len(report_data)} bytes" if isinstance(report_data, bytes | bytearray) else "no bytes"
        raise EvidenceError(
            f"REPORT_DATA: found {found}, wanted exactly {REPORT_DATA_SIZE}", code="agent.report_malformed"
        )
    return bytes(report_data)


def check_report(report: bytes, report_data: bytes, source: str) -> bytes:
    """Return ``report`` if it is 0x4A0 bytes carrying ``report_data`` at 0x50, else raise EvidenceError."""
    if len(report) != REPORT_SIZE:
        raise EvidenceError(
            f"{source}: found a report of {len(report)} bytes, wanted {REPORT_SIZE} (0x{REPORT_SIZE:X})",
            code="agent.report_malformed",
        )
    if report[0x50:0x90] != report_data:
        raise EvidenceError(
            f"{source}: the report's REPORT_DATA is not the value asked for (another request raced ours?)",
            code="agent.report_data_mismatch",
        )
    return bytes(report)


def trim_cert_table(buffer: bytes) -> bytes | None:
    """Return the table in ``buffer`` without trailing padding, or None when it holds no entry."""
    end = 0
    pos = 0
    while pos + _ENTRY.size <= len(buffer):
        guid, offset, length = _ENTRY.unpack_from(buffer, pos)
        pos += _ENTRY.size
        if not any(guid) and offset == 0 and length == 0:
            if pos == _ENTRY.size:
                return None  # the terminator comes first: no certificates
            return bytes(buffer[: max(end, pos)])
        end = max(end, offset + length)
    if not buffer.strip(b"\0"):
        return None
    # No terminator inside the buffer: hand it over unchanged and let the verifier name the defect.
    return bytes(buffer)
