"""SEV-SNP attestation for the client: parse, verify AMD's signature, check the policy, bind to TLS.

Split as in go-sev-guest: ``report`` parses bytes (no crypto), ``verify`` answers "did AMD sign this?" against
pinned roots, ``policy`` answers "does it meet policy?" (it accepts only a ``VerifiedReport``), ``binding``
checks REPORT_DATA against our nonce and the server's TLS key. No network: I/O arrives as an injected
``Getter``. Typical use::

    options = VerifyOptions(getter=..., cache_dir=...)
    verified = verify_report(report_bytes, parse_cert_table(aux_blob), options)
    check_policy(verified, load_policy(path))
    check_binding(verified, nonce, peer_spki_der)
"""

from cube_lsp.attestation.binding import BINDING_LABEL, check_binding, expected_report_data
from cube_lsp.attestation.policy import FirmwareMinimum, Policy, TcbMinimum, check_policy, load_policy
from cube_lsp.attestation.verify import (
    Getter,
    TrustedRoot,
    VerifiedReport,
    VerifyOptions,
    amd_root,
    amd_root_fingerprints,
    cert_hwid,
    cert_tcb,
    check_report_signature,
    crl_url,
    vcek_url,
    verify_certificate_chain,
    verify_report,
)
from cube_wire.attestation_errors import (
    AttestationError,
    BadSignatureError,
    BindingError,
    CertTableMalformedError,
    CertValidityError,
    ChainInvalidError,
    ChipIdMismatchError,
    PolicyInvalidError,
    PolicyViolationError,
    ProductMismatchError,
    ReportMalformedError,
    RevocationError,
    SigningKeyMismatchError,
    TcbMismatchError,
    VcekUnavailableError,
    VerificationError,
)
from cube_wire.certtable import CertTable, fingerprint, parse_cert_table
from cube_wire.report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    Product,
    SigningKey,
    TcbVersion,
    parse_report,
    product_from_cpuid,
)

__all__ = [
    "BINDING_LABEL",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "AttestationError",
    "AttestationReport",
    "BadSignatureError",
    "BindingError",
    "CertTable",
    "CertTableMalformedError",
    "CertValidityError",
    "ChainInvalidError",
    "ChipIdMismatchError",
    "FirmwareMinimum",
    "FirmwareVersion",
    "Getter",
    "GuestPolicy",
    "PlatformInfo",
    "Policy",
    "PolicyInvalidError",
    "PolicyViolationError",
    "Product",
    "ProductMismatchError",
    "ReportMalformedError",
    "RevocationError",
    "SigningKey",
    "SigningKeyMismatchError",
    "TcbMinimum",
    "TcbMismatchError",
    "TcbVersion",
    "TrustedRoot",
    "VcekUnavailableError",
    "VerificationError",
    "VerifiedReport",
    "VerifyOptions",
    "amd_root",
    "amd_root_fingerprints",
    "cert_hwid",
    "cert_tcb",
    "check_binding",
    "check_policy",
    "check_report_signature",
    "crl_url",
    "expected_report_data",
    "fingerprint",
    "load_policy",
    "parse_cert_table",
    "parse_report",
    "product_from_cpuid",
    "vcek_url",
    "verify_certificate_chain",
    "verify_report",
]
