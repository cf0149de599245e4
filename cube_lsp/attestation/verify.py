"""Did AMD sign this? Verify an SEV-SNP report's signature and its certificate chain to a pinned root.

This module bridges parsed reports (``report.py``) and ``cryptography``; it is the only place in the package
that does cryptography, and it translates every ``cryptography`` exception into a named ``VerificationError``.

The chain is ARK -> ASK -> VCEK, or ARK -> ASVK -> VLEK. The ARKs (and, for convenience, the ASK and ASVK) of
Milan, Genoa and Turin are pinned as package data in ``roots/``. AMD signs with RSASSA-PSS (SHA-384,
MGF1-SHA-384, salt 48), which ``cryptography``'s X.509 path builder refuses (VCEKs have no AKI and serial
number 0), so every link is checked here explicitly, together with validity at an injected time, names, key
types and CA flags. Then the VCEK/VLEK is bound to the report: REPORTED_TCB must equal the certificate's SPL
extensions and CHIP_ID its hwID.

I/O is injected: a ``Getter`` (url -> bytes) reaches AMD's key server (KDS) for a VCEK or a CRL when the
report came without one, and ``cache_dir`` keeps what was fetched; ``offline=True`` uses the cache only. Time
comes from ``VerifyOptions.now``.

A *simulated* root (the in-CVM agent's dev-mode ARK) goes through exactly the same checks. Its chain must look
like AMD's: an RSA ARK (any CN), an RSA ASK with CN ``SEV-<Product>`` (ASVK: ``SEV-VLEK-<Product>``) and a
P-384 leaf with CN ``SEV-VCEK``/``SEV-VLEK`` carrying the AMD SPL and hwID extensions, all signed with
RSASSA-PSS SHA-384 salt 48; only AMD's organisation names are not required. The result is then marked
``simulated:<fingerprint>``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from cube_wire.attestation_errors import (
    BadSignatureError,
    CertValidityError,
    ChainInvalidError,
    ChipIdMismatchError,
    ProductMismatchError,
    RevocationError,
    SigningKeyMismatchError,
    TcbMismatchError,
    VcekUnavailableError,
    VerificationError,
)
from cube_wire.certtable import (
    CertTable,
    fingerprint,
)
from cube_wire.report import (
    SIGNED_SIZE,
    AttestationReport,
    Product,
    SigningKey,
    TcbVersion,
    parse_report,
)

Getter = Callable[[str], bytes]
"""Fetch a URL and return the body; raise any exception on failure (it becomes a named error)."""

KDS_BASE = "https://kdsintf.amd.com"


_AMD_OID = "1.3.6.1.4.1.3704.1"
_OID_PRODUCT_NAME = f"{_AMD_OID}.2"
_OID_SPL = {"bootloader": f"{_AMD_OID}.3.1", "tee": f"{_AMD_OID}.3.2", "snp": f"{_AMD_OID}.3.3"}
_OID_SPL |= {"microcode": f"{_AMD_OID}.3.8", "fmc": f"{_AMD_OID}.3.9"}
_OID_HWID = f"{_AMD_OID}.4"
_OID_CSP_ID = f"{_AMD_OID}.5"
_AMD_NAME = (
    (NameOID.ORGANIZATION_NAME, "O", "Advanced Micro Devices"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", "Engineering"),
    (NameOID.LOCALITY_NAME, "L", "Santa Clara"),
    (NameOID.STATE_OR_PROVINCE_NAME, "ST", "CA"),
    (NameOID.COUNTRY_NAME, "C", "US"),
)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


# --------------------------------------------------------------------------------------------- roots


@dataclass(frozen=True)
class TrustedRoot:
    """A root of trust besides AMD's pinned ARKs: a simulated ARK, given as a certificate or a fingerprint.

    With only a fingerprint, the report must ship the ARK itself (cert table); its SHA-256 must match.
    """

    fingerprint: str
    certificate_pem: bytes | None = None

    @classmethod
    def from_pem(cls, pem: bytes | str) -> TrustedRoot:
        """Trust the (simulated) ARK in this PEM or DER certificate."""
        raw = pem.encode() if isinstance(pem, str) else bytes(pem)
        cert = _load_cert(raw, "simulated ARK")
        return cls(fingerprint(cert), cert.public_bytes(serialization.Encoding.PEM))

    @classmethod
    def from_fingerprint(cls, sha256_hex: str) -> TrustedRoot:
        """Trust the (simulated) ARK whose DER has this SHA-256 (64 hex characters)."""
        fp = sha256_hex.strip().lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ChainInvalidError(
                f"trusted root fingerprint: found {sha256_hex!r}, "
                "wanted 64 hex characters (SHA-256 of the DER)",
                code="attestation.root_untrusted",
            )
        return cls(fp)

    @property
    def label(self) -> str:
        """Return ``simulated:<fingerprint>``, the ``root`` a VerifiedReport carries for this root."""
        return f"simulated:{self.fingerprint}"


@cache
def _pinned(product: Product, role: str) -> x509.Certificate:
    """Return a pinned AMD certificate; role is ark, ask or asvk (package data is immutable)."""
    ref = resources.files("cube_lsp.attestation").joinpath(f"roots/{product.value.lower()}_{role}.pem")
    return x509.load_pem_x509_certificate(ref.read_bytes())


def amd_root(product: Product) -> x509.Certificate:
    """Return AMD's pinned root key (ARK) for a product."""
    return _pinned(product, "ark")


def amd_root_fingerprints() -> dict[Product, str]:
    """Return the SHA-256 fingerprints of the pinned ARKs."""
    return {p: fingerprint(amd_root(p)) for p in Product}


# --------------------------------------------------------------------------------------------- options/result


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify; every field has a safe default."""

    now: Callable[[], datetime] | None = None  # the clock; unset: the system clock in UTC
    product: Product | None = None  # unset: from the report's CPUID (v2: try Milan then Genoa)
    trust_amd: bool = True  # accept chains to AMD's pinned ARKs
    extra_roots: tuple[TrustedRoot, ...] = ()  # more roots (simulated); results are marked simulated
    getter: Getter | None = None  # fetches from AMD's KDS; unset: never fetch
    cache_dir: Path | None = None  # where fetched VCEKs/CRLs are kept; unset: no disk cache
    offline: bool = False  # True: use cache_dir only, never call the getter
    check_revocations: bool = False  # True: require a valid CRL (crl, cache or fetched); fail closed
    crl: bytes | None = None  # a CRL file (DER or PEM) to use instead of the cache/KDS


_CONSTRUCT = object()


class VerifiedReport:
    """A report whose signature chains to a trusted root; only ``verify_report`` constructs one."""

    __slots__ = ("chain", "csp_id", "product", "report", "root", "root_fingerprint", "signer")

    report: AttestationReport
    product: Product
    signer: SigningKey
    chain: tuple[x509.Certificate, x509.Certificate, x509.Certificate]  # (leaf, ASK/ASVK, ARK)
    root: str  # "amd" or "simulated:<sha256 of the ARK DER>"
    root_fingerprint: str
    csp_id: str | None  # the VLEK's cspID extension, if any

    def __init__(
        self,
        token: object,
        *,
        report: AttestationReport,
        product: Product,
        signer: SigningKey,
        chain: Chain,
        root: str,
        root_fingerprint: str,
        csp_id: str | None,
    ) -> None:
        if token is not _CONSTRUCT:
            raise TypeError("VerifiedReport is only constructed by cube_lsp.attestation.verify.verify_report")
        for name, value in (
            ("report", report),
            ("product", product),
            ("signer", signer),
            ("chain", chain),
            ("root", root),
            ("root_fingerprint", root_fingerprint),
            ("csp_id", csp_id),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("VerifiedReport is immutable")

    @property
    def simulated(self) -> bool:
        """Return True when the chain ends in a simulated (dev-mode) root rather than AMD's."""
        return self.root != "amd"

    def __repr__(self) -> str:
        return f"VerifiedReport(product={self.product.value}, signer={self.signer.name}, root={self.root!r})"


# --------------------------------------------------------------------------------------------- helpers


def _load_cert(data: bytes, what: str) -> x509.Certificate:
    """Load a DER or PEM certificate; AMD's VCEKs have serial 0, which cryptography >= 45 warns about."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ChainInvalidError(
            f"{what}: found {len(data)} bytes that are not an X.509 certificate ({exc}), wanted DER or PEM",
            code="attestation.cert_malformed",
        ) from None


def _serial(cert: x509.Certificate) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return cert.serial_number


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _check_amd_name(name: x509.Name, what: str) -> None:
    for oid, short, wanted in _AMD_NAME:
        attrs = name.get_attributes_for_oid(oid)
        found = attrs[0].value if attrs else None
        if found != wanted:
            raise ChainInvalidError(f"{what} {short}: found {found!r}, wanted {wanted!r}")


def _verify_link(child: x509.Certificate, parent: x509.Certificate, link: str) -> None:
    """Check that ``parent`` signed ``child`` with RSASSA-PSS SHA-384 (MGF1-SHA-384, salt 48)."""
    if child.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        raise ChainInvalidError(
            f"{link} signature algorithm: found {child.signature_algorithm_oid.dotted_string}, "
            "wanted RSASSA-PSS (1.2.840.113549.1.1.10)"
        )
    if not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        found = getattr(child.signature_hash_algorithm, "name", None)
        raise ChainInvalidError(f"{link} signature hash: found {found}, wanted sha384")
    key = parent.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ChainInvalidError(f"{link}: issuer key found {type(key).__name__}, wanted RSA")
    if child.issuer != parent.subject:
        raise ChainInvalidError(
            f"{link} issuer: found {child.issuer.rfc4514_string()!r}, "
            f"wanted {parent.subject.rfc4514_string()!r}"
        )
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise ChainInvalidError(f"{link}: the RSA-PSS signature does not verify") from None


@lru_cache(maxsize=256)
def _verify_link_der(child_der: bytes, parent_der: bytes, link: str) -> None:
    """Memoised ``_verify_link``; a signature over fixed bytes always verifies or never (success is kept)."""
    _verify_link(_load_cert(child_der, link), _load_cert(parent_der, link), link)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _check_ca(cert: x509.Certificate, what: str, *, min_bits: int) -> None:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < min_bits:
        found = f"RSA-{key.key_size}" if isinstance(key, rsa.RSAPublicKey) else type(key).__name__
        raise ChainInvalidError(f"{what} key: found {found}, wanted RSA-{min_bits} or larger")
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ChainInvalidError(f"{what} basicConstraints: found none, wanted CA:TRUE") from None
    except ValueError as exc:
        raise ChainInvalidError(f"{what} extensions: {exc}", code="attestation.cert_malformed") from None
    if not bc.ca:
        raise ChainInvalidError(f"{what} basicConstraints: found CA:FALSE, wanted CA:TRUE")


def _check_validity(cert: x509.Certificate, what: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise CertValidityError(
            f"{what} notBefore: found {cert.not_valid_before_utc.isoformat()}, wanted a time before now "
            f"({now.isoformat()})",
            code="attestation.cert_not_yet_valid",
        )
    if now > cert.not_valid_after_utc:
        raise CertValidityError(
            f"{what} notAfter: found {cert.not_valid_after_utc.isoformat()}, wanted a time after now "
            f"({now.isoformat()})"
        )


def _der_value(data: bytes, tag: int, what: str) -> bytes:
    """Return the contents of one DER TLV with the given tag that spans all of ``data``."""
    if len(data) < 2 or data[0] != tag:
        raise ChainInvalidError(
            f"{what}: found {data[:4].hex()}..., wanted DER tag 0x{tag:02x}",
            code="attestation.cert_malformed",
        )
    length, pos = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or len(data) < 2 + n:
            raise ChainInvalidError(f"{what}: bad DER length", code="attestation.cert_malformed")
        length, pos = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    if pos + length != len(data):
        raise ChainInvalidError(
            f"{what}: DER length {length} found, wanted {len(data) - pos}", code="attestation.cert_malformed"
        )
    return data[pos:]


def _amd_extensions(cert: x509.Certificate) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        for ext in cert.extensions:
            oid = ext.oid.dotted_string
            if oid.startswith(_AMD_OID + ".") and isinstance(ext.value, x509.UnrecognizedExtension):
                out[oid] = ext.value.value
    except ValueError as exc:
        raise ChainInvalidError(f"leaf extensions: {exc}", code="attestation.cert_malformed") from None
    return out


def cert_tcb(cert: x509.Certificate) -> dict[str, int]:
    """Return the SPL extensions of a VCEK/VLEK by component name (fmc only when present)."""
    exts = _amd_extensions(cert)
    out: dict[str, int] = {}
    for name, oid in _OID_SPL.items():
        if oid in exts:
            value = _der_value(exts[oid], 0x02, f"leaf extension {name}SPL ({oid})")
            out[name] = int.from_bytes(value, "big", signed=True) if value else -1
    return out


def cert_hwid(cert: x509.Certificate) -> bytes | None:
    """Return a VCEK's hwID extension (raw, or unwrapped from a DER OCTET STRING), or None."""
    raw = _amd_extensions(cert).get(_OID_HWID)
    if raw is not None and len(raw) in (10, 66) and raw[0] == 0x04 and raw[1] == len(raw) - 2:
        return raw[2:]  # the DER-wrapped form some producers use (trustee test-vcek-invalid-new.der)
    return raw


def _csp_id(cert: x509.Certificate) -> str | None:
    raw = _amd_extensions(cert).get(_OID_CSP_ID)
    if raw is None:
        return None
    return _der_value(raw, 0x16, "leaf extension cspID").decode("ascii", errors="replace")


def check_report_signature(raw: bytes, key: x509.Certificate | ec.EllipticCurvePublicKey) -> None:
    """Check the ECDSA P-384/SHA-384 signature of raw report bytes (r, s little-endian at 0x2A0, 0x2E8)."""
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP384R1):
        raise ChainInvalidError(f"leaf key: found {type(public).__name__}, wanted EC P-384")
    if len(raw) < 0x330:
        raise BadSignatureError(f"report signature: found {len(raw)} bytes, wanted at least 0x330")
    r = int.from_bytes(raw[0x2A0:0x2E8], "little")
    s = int.from_bytes(raw[0x2E8:0x330], "little")
    try:
        public.verify(encode_dss_signature(r, s), raw[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        raise BadSignatureError(
            "report SIGNATURE: found a signature that does not verify under the VCEK/VLEK key, "
            "wanted ECDSA P-384/SHA-384 over bytes 0x000..0x2A0"
        ) from None


# --------------------------------------------------------------------------------------------- KDS + cache


def vcek_url(report: AttestationReport, product: Product) -> str:
    """Return the KDS URL of the VCEK for this report's chip and REPORTED_TCB."""
    tcb = report.reported_tcb
    hwid = report.chip_id[:8] if product is Product.TURIN else report.chip_id
    query = f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
    if product is Product.TURIN:
        query = f"fmcSPL={tcb.fmc or 0}&{query}"
    return f"{KDS_BASE}/vcek/v1/{product.value}/{hwid.hex()}?{query}"


def crl_url(product: Product, signer: SigningKey) -> str:
    """Return the KDS URL of the CRL for the VCEK (ASK) or VLEK (ASVK) chain of a product."""
    kind = "vlek" if signer is SigningKey.VLEK else "vcek"
    return f"{KDS_BASE}/{kind}/v1/{product.value}/crl"


def _vcek_cache_name(report: AttestationReport, product: Product) -> str:
    t = report.reported_tcb
    hwid = report.chip_id[:8] if product is Product.TURIN else report.chip_id
    fmc = f"-{t.fmc}" if product is Product.TURIN else ""
    return f"vcek-{product.value}-{hwid.hex()}-{t.bootloader}-{t.tee}-{t.snp}-{t.microcode}{fmc}.der"


def _cache_read(opts: VerifyOptions, name: str) -> bytes | None:
    if opts.cache_dir is None:
        return None
    try:
        return (opts.cache_dir / name).read_bytes()
    except OSError:
        return None


def _cache_write(opts: VerifyOptions, name: str, data: bytes) -> None:
    """Write atomically; a cache that cannot be written only costs a later fetch."""
    if opts.cache_dir is None:
        return
    try:
        opts.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=opts.cache_dir, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, opts.cache_dir / name)
    except OSError:
        pass


def _fetch(opts: VerifyOptions, url: str, what: str, error: type[VerificationError], code: str) -> bytes:
    if opts.offline or opts.getter is None:
        mode = "offline mode" if opts.offline else "no getter configured"
        raise error(f"{what}: found nothing in the cache ({mode}), wanted a cached copy of {url}", code=code)
    try:
        data = opts.getter(url)
    except Exception as exc:  # the getter is foreign code: any failure means "unavailable"
        raise error(f"{what}: fetching {url} failed ({type(exc).__name__}: {exc})", code=code) from None
    if not isinstance(data, bytes | bytearray) or not data:
        raise error(f"{what}: {url} returned {type(data).__name__} of no content, wanted bytes", code=code)
    return bytes(data)


# --------------------------------------------------------------------------------------------- CRL


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise RevocationError(f"CRL: not a DER or PEM CRL ({exc})", code="attestation.crl_invalid") from None


def _check_crl(crl: x509.CertificateRevocationList, ark: x509.Certificate, now: datetime) -> None:
    if crl.issuer != ark.subject:
        raise RevocationError(
            f"CRL issuer: found {crl.issuer.rfc4514_string()!r}, "
            f"wanted the ARK {ark.subject.rfc4514_string()!r}",
            code="attestation.crl_invalid",
        )
    key = ark.public_key()
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS or not isinstance(
        key, rsa.RSAPublicKey
    ):
        raise RevocationError(
            f"CRL signature algorithm: found {crl.signature_algorithm_oid.dotted_string}, wanted RSASSA-PSS",
            code="attestation.crl_invalid",
        )
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        raise RevocationError(
            "CRL signature: does not verify under the ARK", code="attestation.crl_invalid"
        ) from None
    next_update = crl.next_update_utc
    if next_update is not None and now > next_update:
        raise RevocationError(
            f"CRL nextUpdate: found {next_update.isoformat()}, wanted a time after now ({now.isoformat()})",
            code="attestation.crl_invalid",
        )


def _cached_crl(
    opts: VerifyOptions, name: str, ark: x509.Certificate, now: datetime
) -> x509.CertificateRevocationList | None:
    cached = _cache_read(opts, name)
    if cached is None:
        return None
    try:
        crl = _load_crl(cached)
        _check_crl(crl, ark, now)
    except RevocationError:
        return None  # stale or damaged: fetch a fresh one if we may
    return crl


def _check_revocation(
    opts: VerifyOptions,
    product: Product,
    signer: SigningKey,
    chain: Chain,
    now: datetime,
) -> None:
    leaf, inter, ark = chain
    url = crl_url(product, signer)
    name = (
        f"crl-{'vlek' if signer is SigningKey.VLEK else 'vcek'}-{product.value}-{fingerprint(ark)[:16]}.der"
    )
    crl: x509.CertificateRevocationList | None = None
    if opts.crl is not None:
        crl = _load_crl(opts.crl)
        _check_crl(crl, ark, now)
    else:
        crl = _cached_crl(opts, name, ark, now)
    if crl is None:
        data = _fetch(opts, url, "CRL", RevocationError, "attestation.crl_unavailable")
        crl = _load_crl(data)
        _check_crl(crl, ark, now)
        _cache_write(opts, name, data)
    for cert, what in ((inter, f"intermediate {_cn(inter.subject)}"), (leaf, f"leaf {_cn(leaf.subject)}")):
        serial = _serial(cert)
        if crl.get_revoked_certificate_by_serial_number(serial) is not None:
            raise RevocationError(
                f"{what} serial {serial:#x}: found in the CRL of {_cn(ark.subject)}, wanted absent"
            )


# --------------------------------------------------------------------------------------------- verify


Chain = tuple[x509.Certificate, x509.Certificate, x509.Certificate]
"""(leaf VCEK/VLEK, ASK/ASVK, ARK)."""


@dataclass
class _Attempt:
    leaf_der: bytes
    fetched: tuple[str, bytes] | None = None  # (cache name, data), written to the cache once all checks pass


def _leaf_bytes(
    report: AttestationReport, product: Product, certs: CertTable, opts: VerifyOptions
) -> _Attempt:
    if report.signer is SigningKey.VLEK:
        if certs.vlek is None:
            raise VcekUnavailableError(
                "VLEK certificate: found none with the report, wanted one from the host or cloud provider "
                "(VLEKs are not public on AMD's key server)"
            )
        return _Attempt(certs.vlek)
    if certs.vcek is not None:
        return _Attempt(certs.vcek)
    if certs.vlek is not None:
        raise SigningKeyMismatchError("KEY_INFO.SIGNING_KEY: found 0 (VCEK), but only a VLEK was supplied")
    if report.chip_id_masked:
        raise VcekUnavailableError(
            "VCEK: CHIP_ID is masked (all zero), so the VCEK cannot be looked up on KDS"
        )
    name = _vcek_cache_name(report, product)
    cached = _cache_read(opts, name)
    if cached is not None:
        return _Attempt(cached)
    data = _fetch(
        opts, vcek_url(report, product), "VCEK", VcekUnavailableError, "attestation.vcek_unavailable"
    )
    return _Attempt(data, fetched=(name, data))


def _establish_chain(
    leaf_der: bytes,
    signer: SigningKey,
    product: Product,
    certs: CertTable,
    opts: VerifyOptions,
    now: datetime,
) -> tuple[Chain, str, str]:
    """Verify leaf <- ASK/ASVK <- root for ``product``; return the chain, the root label and fingerprint."""
    kind = "VLEK" if signer is SigningKey.VLEK else "VCEK"
    leaf = _load_cert(leaf_der, kind)
    leaf_cn = _cn(leaf.subject)
    if leaf_cn != f"SEV-{kind}":
        other = "VCEK" if kind == "VLEK" else "VLEK"
        kind_error: type[VerificationError] = (
            SigningKeyMismatchError if leaf_cn == f"SEV-{other}" else ChainInvalidError
        )
        raise kind_error(
            f"leaf subject CN: found {leaf_cn!r}, wanted 'SEV-{kind}' (KEY_INFO.SIGNING_KEY={signer.value})"
        )
    inter_cn = f"SEV-VLEK-{product.value}" if signer is SigningKey.VLEK else f"SEV-{product.value}"
    issuer_cn = _cn(leaf.issuer)
    if issuer_cn != inter_cn:
        named = {f"SEV-{p.value}" for p in Product} | {f"SEV-VLEK-{p.value}" for p in Product}
        issuer_error: type[VerificationError] = (
            ProductMismatchError if issuer_cn in named else ChainInvalidError
        )
        raise issuer_error(
            f"leaf issuer CN: found {issuer_cn!r}, wanted {inter_cn!r} (product {product.value})"
        )

    # The root: an ARK the host shipped must be one we trust; else the pinned/extra root that issued the ASK.
    # (certificate or None when known by fingerprint only, label, fingerprint)
    roots: list[tuple[x509.Certificate | None, str, str]] = []
    if opts.trust_amd:
        ark = amd_root(product)
        roots.append((ark, "amd", fingerprint(ark)))
    for extra in opts.extra_roots:
        cert = _load_cert(extra.certificate_pem, "simulated ARK") if extra.certificate_pem else None
        roots.append((cert, extra.label, extra.fingerprint))
    usable: list[tuple[x509.Certificate, str, str]] = [(c, lab, f) for c, lab, f in roots if c is not None]
    if certs.ark is not None:
        # Never trust an ARK the host shipped: it is only usable when it IS one of our roots.
        shipped = _load_cert(certs.ark, "ARK from the report")
        fp = fingerprint(shipped)
        labels = [lab for _, lab, f in roots if f == fp]
        if not labels:
            raise ChainInvalidError(
                f"ARK from the report: found SHA-256 {fp} ({_cn(shipped.subject)!r}), "
                f"wanted a pinned AMD ARK "
                f"for {product.value} or a configured root",
                code="attestation.root_untrusted",
            )
        usable = [(shipped, labels[0], fp)]

    if certs.ask is not None:
        inter = _load_cert(certs.ask, "ASK/ASVK")
    elif any(lab == "amd" for _, lab, _ in usable):
        inter = _pinned(product, "asvk" if signer is SigningKey.VLEK else "ask")
    else:
        raise ChainInvalidError(f"{inter_cn}: found no intermediate certificate, wanted one with the report")
    if _cn(inter.subject) != inter_cn:
        raise ChainInvalidError(f"intermediate subject CN: found {_cn(inter.subject)!r}, wanted {inter_cn!r}")
    chosen = [(c, lab, f) for c, lab, f in usable if c.subject == inter.issuer]
    if not chosen:
        raise ChainInvalidError(
            f"{inter_cn} issuer: found {inter.issuer.rfc4514_string()!r}, "
            f"wanted a trusted root for {product.value}",
            code="attestation.root_untrusted",
        )
    # Several trusted roots may share a name (a simulated ARK named like AMD's): the signature decides.
    failure: VerificationError | None = None
    for root, label, fp in chosen:
        try:
            _check_links(leaf, inter, root, inter_cn=inter_cn, kind=kind, is_amd=label == "amd")
        except ChainInvalidError as exc:
            failure = failure or exc
            continue
        for cert, what in ((root, f"root {_cn(root.subject)!r}"), (inter, inter_cn), (leaf, kind)):
            _check_validity(cert, what, now)
        return (leaf, inter, root), label, fp
    raise failure or ChainInvalidError(f"{inter_cn}: no trusted root signed it")


def _check_links(
    leaf: x509.Certificate,
    inter: x509.Certificate,
    root: x509.Certificate,
    *,
    inter_cn: str,
    kind: str,
    is_amd: bool,
) -> None:
    if is_amd:
        for cert, what in ((root, "ARK subject"), (inter, f"{inter_cn} subject"), (leaf, f"{kind} subject")):
            _check_amd_name(cert.subject, what)
    _check_ca(root, f"root {_cn(root.subject)!r}", min_bits=4096 if is_amd else 2048)
    _check_ca(inter, inter_cn, min_bits=4096 if is_amd else 2048)
    root_der, inter_der = _der(root), _der(inter)
    _verify_link_der(root_der, root_der, f"root {_cn(root.subject)!r} self-signature")
    _verify_link_der(inter_der, root_der, f"{_cn(root.subject)} -> {inter_cn}")
    _verify_link_der(_der(leaf), inter_der, f"{inter_cn} -> {kind}")


def _now(opts: VerifyOptions) -> datetime:
    now = opts.now() if opts.now is not None else datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def verify_certificate_chain(
    leaf: bytes,
    product: Product,
    *,
    signer: SigningKey = SigningKey.VCEK,
    certs: CertTable | None = None,
    options: VerifyOptions | None = None,
) -> tuple[Chain, str]:
    """Verify a VCEK/VLEK (DER or PEM) up to a trusted root; return the chain and the root label."""
    opts = options or VerifyOptions()
    now = _now(opts)
    chain, label, _ = _establish_chain(leaf, signer, product, certs or CertTable(), opts, now)
    if opts.check_revocations:
        _check_revocation(opts, product, signer, chain, now)
    return chain, label


def _check_binding_to_cert(report: AttestationReport, product: Product, leaf: x509.Certificate) -> None:
    spl = cert_tcb(leaf)
    reported = TcbVersion.decode(report.reported_tcb.raw, product)
    for name, value in reported.components().items():
        found = spl.get(name)
        if found != value:
            raise TcbMismatchError(
                f"REPORTED_TCB.{name}: found {value} in the report, "
                f"wanted {found} (the certificate's {name}SPL)"
            )
    if report.signer is SigningKey.VLEK:
        return
    hwid = cert_hwid(leaf)
    chip = report.chip_id[:8] if product is Product.TURIN else report.chip_id
    if report.chip_id_masked:
        raise ChipIdMismatchError(
            "CHIP_ID: found all zero (masked), wanted the chip id (only a VLEK may mask it)"
        )
    if hwid is None or hwid != chip:
        raise ChipIdMismatchError(
            f"CHIP_ID: found {chip.hex()}, "
            f"wanted {hwid.hex() if hwid else 'a hwID extension'} (the VCEK's hwID)"
        )


def verify_report(
    report: bytes | AttestationReport,
    certs: CertTable | None = None,
    options: VerifyOptions | None = None,
) -> VerifiedReport:
    """Verify that AMD (or a configured simulated root) signed this report; return a VerifiedReport."""
    opts = options or VerifyOptions()
    if isinstance(report, AttestationReport):
        rep = report
        if opts.product is not None and rep.product is not None and rep.product is not opts.product:
            raise ProductMismatchError(
                f"report product: found {rep.product.value}, wanted {opts.product.value}"
            )
        candidates = (
            (opts.product,) if opts.product is not None and rep.product is None else rep.product_candidates
        )
    else:
        rep = parse_report(report, product=opts.product)
        candidates = rep.product_candidates
    now = _now(opts)
    if rep.mask_chip_key or rep.signer not in (SigningKey.VCEK, SigningKey.VLEK):
        raise BadSignatureError(
            f"KEY_INFO: found MASK_CHIP_KEY={int(rep.mask_chip_key)} SIGNING_KEY={rep.signing_key}, "
            "wanted a report signed by a VCEK (0) or VLEK (1)"
        )
    if not candidates:
        raise ProductMismatchError(
            f"report product: found CPUID family 0x{rep.cpuid_fam_id or 0:02X} "
            f"model 0x{rep.cpuid_mod_id or 0:02X}, "
            "wanted Milan, Genoa or Turin (name the product in VerifyOptions.product)"
        )
    certs = certs or CertTable()
    failures: list[VerificationError] = []
    for product in candidates:
        try:
            attempt = _leaf_bytes(rep, product, certs, opts)
            chain, root_label, root_fp = _establish_chain(
                attempt.leaf_der, SigningKey(rep.signing_key), product, certs, opts, now
            )
        except VerificationError as exc:
            failures.append(exc)
            continue
        check_report_signature(rep.raw, chain[0])
        _check_binding_to_cert(rep, product, chain[0])
        signer = SigningKey(rep.signing_key)
        if opts.check_revocations:
            _check_revocation(opts, product, signer, chain, now)
        if attempt.fetched is not None:
            _cache_write(opts, *attempt.fetched)
        return VerifiedReport(
            _CONSTRUCT,
            report=rep,
            product=product,
            signer=signer,
            chain=chain,
            root=root_label,
            root_fingerprint=root_fp,
            csp_id=_csp_id(chain[0]) if signer is SigningKey.VLEK else None,
        )
    # Every candidate product failed; a product-name mismatch is the least informative reason.
    informative = [f for f in failures if f.code != "attestation.product_mismatch"]
    raise (informative or failures)[0]
