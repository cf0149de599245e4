"""Every failure of the attestation package, each with a stable ``code``.

Callers and tests branch on ``code``; the message names the field, the value found and the value wanted.
Each class has a default code; a few take a more precise code per check (listed below)::

    CubeError                                   (cube_lsp/errors.py)
    └── AttestationError                        attestation.error
        ├── ReportMalformedError                attestation.report_malformed       report.py
        ├── CertTableMalformedError             attestation.cert_table_malformed   verify.py
        ├── VerificationError                   "did AMD sign this?" (verify.py)
        │   ├── BadSignatureError               attestation.bad_signature
        │   ├── ChainInvalidError               attestation.chain_invalid
        │   │                                   attestation.cert_malformed
        │   │                                   attestation.root_untrusted
        │   ├── CertValidityError               attestation.cert_expired
        │   │                                   attestation.cert_not_yet_valid
        │   ├── RevocationError                 attestation.cert_revoked
        │   │                                   attestation.crl_invalid
        │   │                                   attestation.crl_unavailable
        │   ├── TcbMismatchError                attestation.tcb_mismatch
        │   ├── ChipIdMismatchError             attestation.chip_id_mismatch
        │   ├── ProductMismatchError            attestation.product_mismatch   (also raised by report.py)
        │   ├── SigningKeyMismatchError         attestation.signing_key_mismatch
        │   └── VcekUnavailableError            attestation.vcek_unavailable
        ├── PolicyInvalidError                  attestation.policy_invalid   (load_policy: stops all sending)
        ├── PolicyViolationError                "does it meet policy?" (policy.py), one code per check:
        │       attestation.root_not_allowed, product_not_allowed, measurement_mismatch,
        │       host_data_mismatch, report_id_not_allowed, chip_id_not_allowed, family_id_mismatch,
        │       image_id_mismatch, id_block_missing, id_key_not_allowed, author_key_missing,
        │       author_key_not_allowed, guest_svn_too_low, debug_enabled, policy_bit_forbidden,
        │       policy_bit_required, abi_too_low, platform_info_forbidden, platform_info_required,
        │       vmpl_not_allowed, tcb_too_low, firmware_too_low, provisional_firmware,
        │       mitigation_missing
        └── BindingError                        binding.py
                attestation.binding_mismatch, attestation.nonce_invalid
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class AttestationError(CubeError):
    """Any attestation failure; nothing may be sent to the peer that caused it."""

    code = "attestation.error"


class ReportMalformedError(AttestationError):
    """The report bytes are not a well-formed ATTESTATION_REPORT (length, version, reserved fields...)."""

    code = "attestation.report_malformed"


class CertTableMalformedError(AttestationError):
    """The extended-report certificate table (GUID table) is not well formed."""

    code = "attestation.cert_table_malformed"


class VerificationError(AttestationError):
    """AMD's signature over the report could not be established."""

    code = "attestation.verification_failed"


class BadSignatureError(VerificationError):
    """The report's ECDSA P-384 signature does not verify under the VCEK/VLEK, or the report is unsigned."""

    code = "attestation.bad_signature"


class ChainInvalidError(VerificationError):
    """The chain ARK -> ASK/ASVK -> VCEK/VLEK does not hold (signature, names, key types, root)."""

    code = "attestation.chain_invalid"


class CertValidityError(VerificationError):
    """A certificate of the chain is outside its validity period at the verification time."""

    code = "attestation.cert_expired"


class RevocationError(VerificationError):
    """A certificate is revoked, or the CRL needed to tell is invalid or unavailable."""

    code = "attestation.cert_revoked"


class TcbMismatchError(VerificationError):
    """The report's REPORTED_TCB differs from the TCB the VCEK/VLEK was issued for."""

    code = "attestation.tcb_mismatch"


class ChipIdMismatchError(VerificationError):
    """The report's CHIP_ID differs from the VCEK's hwID extension."""

    code = "attestation.chip_id_mismatch"


class ProductMismatchError(VerificationError):
    """The report's CPU product, the requested product and the certificates' product disagree."""

    code = "attestation.product_mismatch"


class SigningKeyMismatchError(VerificationError):
    """The report's SIGNING_KEY field (VCEK or VLEK) differs from the kind of certificate given."""

    code = "attestation.signing_key_mismatch"


class VcekUnavailableError(VerificationError):
    """No VCEK/VLEK certificate: none shipped with the report, none cached, and none could be fetched."""

    code = "attestation.vcek_unavailable"


class PolicyInvalidError(AttestationError):
    """The attestation policy file is invalid; ``field`` is the dotted path of the offending key."""

    code = "attestation.policy_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"attestation policy '{field}': {message}")
        self.field = field


class PolicyViolationError(AttestationError):
    """A verified report does not meet the policy; ``field`` names the report field checked."""

    code = "attestation.policy_violation"

    def __init__(self, field: str, message: str, *, code: str) -> None:
        super().__init__(f"attestation report '{field}': {message}", code=code)
        self.field = field


class BindingError(AttestationError):
    """REPORT_DATA does not bind this nonce and this TLS key, or the nonce itself is unusable."""

    code = "attestation.binding_mismatch"
