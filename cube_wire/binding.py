"""The REPORT_DATA binding both sides compute (DESIGN.md section 1.4).

``REPORT_DATA = SHA-512(b"cube-attest-v1" || nonce[32] || SHA-256(server TLS SubjectPublicKeyInfo DER))``.
The in-CVM agent asks the firmware for a report with this REPORT_DATA; the client recomputes it from its own
nonce and the key of the TLS connection the report came over. Hashing only, no I/O.
"""

from __future__ import annotations

import hashlib

from cube_wire.attestation_errors import BindingError

__all__ = ["BINDING_LABEL", "NONCE_SIZE", "expected_report_data"]

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
