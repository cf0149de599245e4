"""Check that a report binds this client's nonce and the server's TLS key (DESIGN.md section 1.4).

The caller passes the SPKI of the peer certificate of the very TLS connection that fetched the report; a match
proves the CVM holding that key produced the report after seeing our fresh nonce. The formula is
:func:`cube_wire.binding.expected_report_data`, shared with the agent. Hashing only, no I/O.
"""

from __future__ import annotations

import hmac

from cube_lsp.attestation.verify import VerifiedReport
from cube_wire.attestation_errors import BindingError
from cube_wire.binding import BINDING_LABEL, NONCE_SIZE, expected_report_data
from cube_wire.report import AttestationReport

__all__ = ["BINDING_LABEL", "NONCE_SIZE", "check_binding", "expected_report_data"]


def check_binding(report: AttestationReport | VerifiedReport, nonce: bytes, spki_der: bytes) -> None:
    """Raise BindingError unless REPORT_DATA binds this nonce and this server key (constant-time compare)."""
    parsed = report.report if isinstance(report, VerifiedReport) else report
    wanted = expected_report_data(nonce, spki_der)
    if not hmac.compare_digest(parsed.report_data, wanted):
        raise BindingError(
            f"REPORT_DATA: found {parsed.report_data.hex()}, wanted {wanted.hex()} "
            "(SHA-512 of the label, our nonce and the SHA-256 of this connection's server key)"
        )
