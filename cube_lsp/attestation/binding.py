"""Bind a report to this client's nonce and to the server's TLS key (DESIGN.md section 1.4).

``REPORT_DATA = SHA-512(b"cube-attest-v1" || nonce[32] || SHA-256(server TLS SubjectPublicKeyInfo DER))``.
The caller passes the SPKI of the peer certificate of the very TLS connection that fetched the report; a match
proves the CVM holding that key produced the report after seeing our fresh nonce. Hashing only, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac

from cube_lsp.attestation.errors import BindingError
from cube_lsp.attestation.report import AttestationReport
from cube_lsp.attestation.verify import VerifiedReport

BINDING_LABEL = b"cube-attest-v1"
NONCE_SIZE = 32


def _check_nonce(nonce: bytes) -> None:
    if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_SIZE:
        found = f"{len(nonce)} bytes" if isinstance(nonce, bytes | bytearray) else type(nonce).__name__
        raise BindingError(
            f"nonce: found {found}, wanted {NONCE_SIZE} random bytes", code="attestation.nonce_invalid"
        )
    if not any(nonce):
        raise BindingError(
            "nonce: found all zero bytes, wanted 32 random bytes", code="attestation.nonce_invalid"
        )


def expected_report_data(nonce: bytes, spki_der: bytes) -> bytes:
    """Return the 64-byte REPORT_DATA a CVM must produce for this nonce and TLS public key."""
    _check_nonce(nonce)
    if not isinstance(spki_der, bytes | bytearray) or not spki_der:
        raise BindingError("server SubjectPublicKeyInfo: found no bytes, wanted its DER encoding")
    return hashlib.sha512(BINDING_LABEL + bytes(nonce) + hashlib.sha256(spki_der).digest()).digest()


def check_binding(report: AttestationReport | VerifiedReport, nonce: bytes, spki_der: bytes) -> None:
    """Raise BindingError unless REPORT_DATA binds this nonce and this server key (constant-time compare)."""
    parsed = report.report if isinstance(report, VerifiedReport) else report
    wanted = expected_report_data(nonce, spki_der)
    if not hmac.compare_digest(parsed.report_data, wanted):
        raise BindingError(
            f"REPORT_DATA: found {parsed.report_data.hex()}, wanted {wanted.hex()} "
            "(SHA-512 of the label, our nonce and the SHA-256 of this connection's server key)"
        )
