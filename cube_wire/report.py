"""Parse an AMD SEV-SNP ATTESTATION_REPORT (versions 2, 3, 4 and 5) into typed, frozen dataclasses.

Parsing only: no cryptography and no I/O. The layout is AMD pub. 56860 (Table 23); integers are little-endian.
The checks here are the ones that need nothing but the bytes: exact length (0x4A0), a known version, the
signature algorithm, must-be-zero ranges and reserved field values. Bits that a later firmware may define
(unknown guest-policy, platform-info and key-info bits) are not fatal: they are listed in
``AttestationReport.warnings`` so a caller can show them.

The product (Milan, Genoa, Turin) decides the TCB_VERSION layout, so it is worked out first: from CPUID_FAM_ID
/ CPUID_MOD_ID in versions 3 and later, else from a product the caller names, else (version 2) from CHIP_ID,
whose bytes 8..63 are zero only on Turin. A version-2 report from Milan or Genoa cannot be told apart from its
bytes: ``product`` is then ``None`` and ``product_candidates`` lists both (they share the TCB layout).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from cube_wire.attestation_errors import ProductMismatchError, ReportMalformedError

REPORT_SIZE = 0x4A0
"""Size of an ATTESTATION_REPORT in bytes."""
SIGNED_SIZE = 0x2A0
"""The signature covers ``report[0:SIGNED_SIZE]``."""
SUPPORTED_VERSIONS = (2, 3, 4, 5)
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1


class Product(StrEnum):
    """An SEV-SNP product line; the value is the name AMD's key server uses in its URLs.

    ``Product(name)`` also takes the spellings with a stepping that VCEK certificates (productName) and
    go-sev-guest use, ``Milan-B0``, ``Genoa-B1``, ``Turin-C1``, and any letter case: the stepping does
    not change the product line, its key server URLs or its report layout.
    """

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @classmethod
    def _missing_(cls, value: object) -> Product | None:
        if not isinstance(value, str):
            return None
        match = _PRODUCT_NAME.fullmatch(value.strip())
        if match is None:
            return None
        line = match["line"].lower()
        return next((product for product in cls if product.value.lower() == line), None)


#: A product line, optionally with a stepping: Milan, Milan-B0, genoa-b1, Turin-C1.
_PRODUCT_NAME = re.compile(r"(?P<line>[A-Za-z]+)(?:-[A-Za-z][0-9])?")


def parse_product(name: str) -> Product:
    """Return the product `name` names (Milan, Milan-B0, ...); raise ValueError naming the choices."""
    try:
        return Product(name)
    except ValueError:
        raise ValueError(
            f"found {name!r}, wanted Milan, Genoa or Turin, optionally with a stepping (Milan-B0, Genoa-B1)"
        ) from None


class SigningKey(IntEnum):
    """KEY_INFO.SIGNING_KEY: which key signed the report."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION decoded for its product; ``fmc`` is ``None`` before Turin (no such component)."""

    raw: int
    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: int, product: Product | None) -> TcbVersion:
        """Decode a raw little-endian u64 TCB_VERSION with the layout of ``product`` (None: Milan/Genoa)."""
        b = raw.to_bytes(8, "little")
        if product is Product.TURIN:
            return cls(raw=raw, fmc=b[0], bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7])
        return cls(raw=raw, bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def components(self) -> dict[str, int]:
        """Return the named components that exist for this layout (fmc only on Turin)."""
        out = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp, "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self.components().items())
        return f"{parts} (raw 0x{self.raw:016x})"


@dataclass(frozen=True)
class GuestPolicy:
    """The guest POLICY word chosen by the guest owner at launch (AMD 56860, "Guest Policy")."""

    raw: int
    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool
    debug: bool
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool

    BIT_NAMES = (
        "smt",
        "migrate_ma",
        "debug",
        "single_socket",
        "cxl_allow",
        "mem_aes_256_xts",
        "rapl_dis",
        "ciphertext_hiding",
        "page_swap_disable",
    )

    @classmethod
    def decode(cls, raw: int) -> GuestPolicy:
        """Decode the 64-bit POLICY field."""

        def bit(n: int) -> bool:
            return bool(raw >> n & 1)

        return cls(
            raw=raw,
            abi_minor=raw & 0xFF,
            abi_major=raw >> 8 & 0xFF,
            smt=bit(16),
            migrate_ma=bit(18),
            debug=bit(19),
            single_socket=bit(20),
            cxl_allow=bit(21),
            mem_aes_256_xts=bit(22),
            rapl_dis=bit(23),
            ciphertext_hiding=bit(24),
            page_swap_disable=bit(25),
        )


@dataclass(frozen=True)
class PlatformInfo:
    """PLATFORM_INFO: how the platform was configured when the report was made."""

    raw: int
    smt_enabled: bool
    tsme_enabled: bool
    ecc_enabled: bool
    rapl_disabled: bool
    ciphertext_hiding_enabled: bool
    alias_check_complete: bool
    iommu_write_safe: bool  # bit 6, defined for Turin (tinfoil-go #115); reserved on Milan and Genoa
    tio_enabled: bool

    BIT_NAMES = (
        "smt_enabled",
        "tsme_enabled",
        "ecc_enabled",
        "rapl_disabled",
        "ciphertext_hiding_enabled",
        "alias_check_complete",
        "iommu_write_safe",
        "tio_enabled",
    )

    @classmethod
    def decode(cls, raw: int) -> PlatformInfo:
        """Decode the 64-bit PLATFORM_INFO field."""
        return cls(raw, *(bool(raw >> n & 1) for n in range(8)))


@dataclass(frozen=True)
class FirmwareVersion:
    """An SNP firmware version, compared as (major, minor, build)."""

    major: int
    minor: int
    build: int

    def as_tuple(self) -> tuple[int, int, int]:
        """Return (major, minor, build) for ordering."""
        return (self.major, self.minor, self.build)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"


@dataclass(frozen=True)
class AttestationReport:
    """One parsed ATTESTATION_REPORT; byte fields are ``bytes`` of their exact size, integers are ``int``."""

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes  # 16
    image_id: bytes  # 16
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    author_key_en: bool
    mask_chip_key: bool
    signing_key: int  # a SigningKey value when known; 2..6 are reserved (reported in warnings)
    report_data: bytes  # 64
    measurement: bytes  # 48
    host_data: bytes  # 32
    id_key_digest: bytes  # 48
    author_key_digest: bytes  # 48
    report_id: bytes  # 32
    report_id_ma: bytes  # 32
    reported_tcb: TcbVersion
    cpuid_fam_id: int | None  # version >= 3 only
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes  # 64; Turin uses bytes 0..7 only
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int | None  # version >= 5 only
    current_mit_vector: int | None
    signature_r: bytes  # 72, little-endian
    signature_s: bytes  # 72, little-endian
    product: Product | None  # None: a version-2 report from Milan or Genoa (see product_candidates)
    product_source: str  # "cpuid", "caller", "chip_id" or "ambiguous"
    product_candidates: tuple[Product, ...]
    warnings: tuple[str, ...]
    raw: bytes  # the 0x4A0 bytes parsed

    @property
    def signed_bytes(self) -> bytes:
        """Return the bytes covered by the signature, ``raw[0:0x2A0]``."""
        return self.raw[:SIGNED_SIZE]

    @property
    def current_firmware(self) -> FirmwareVersion:
        """Return CURRENT_MAJOR.CURRENT_MINOR.CURRENT_BUILD."""
        return FirmwareVersion(self.current_major, self.current_minor, self.current_build)

    @property
    def committed_firmware(self) -> FirmwareVersion:
        """Return COMMITTED_MAJOR.COMMITTED_MINOR.COMMITTED_BUILD."""
        return FirmwareVersion(self.committed_major, self.committed_minor, self.committed_build)

    @property
    def signer(self) -> SigningKey | None:
        """Return the signing key kind, or None for a reserved value."""
        try:
            return SigningKey(self.signing_key)
        except ValueError:
            return None

    @property
    def chip_id_masked(self) -> bool:
        """Return True when CHIP_ID is all zero (the host set MASK_CHIP_ID, as with VLEK reports)."""
        return not any(self.chip_id)

    @property
    def hwid(self) -> bytes:
        """Return the chip identifier AMD's key server and the VCEK use: 8 bytes on Turin, else 64."""
        return self.chip_id[:8] if self.product is Product.TURIN else self.chip_id


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Map CPUID family/model (extended+base) to a product line, or None when unknown."""
    if family == 0x19:
        if model <= 0x0F:
            return Product.MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:  # Genoa, and Bergamo/Siena (Genoa certs)
            return Product.GENOA
    if family == 0x1A and model <= 0x11:
        return Product.TURIN
    return None


def _fail(field: str, found: str, wanted: str) -> ReportMalformedError:
    return ReportMalformedError(f"attestation report field {field}: found {found}, wanted {wanted}")


def _require_zero(data: bytes, start: int, end: int, field: str) -> None:
    chunk = data[start:end]
    if any(chunk):
        first = next(i for i, b in enumerate(chunk) if b)
        raise _fail(
            f"{field} [0x{start:03X}..0x{end:03X})",
            f"byte 0x{chunk[first]:02x} at offset 0x{start + first:03X}",
            "all zero (reserved)",
        )


def _u32(data: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", data, off)[0])


def _u64(data: bytes, off: int) -> int:
    return int(struct.unpack_from("<Q", data, off)[0])


def _detect_product(
    data: bytes, version: int, given: Product | None, warnings: list[str]
) -> tuple[Product | None, str, tuple[Product, ...]]:
    if version >= 3:
        fam, mod = data[0x188], data[0x189]
        found = product_from_cpuid(fam, mod)
        if found is not None:
            if given is not None and given is not found:
                raise ProductMismatchError(
                    f"attestation report field CPUID_FAM_ID/CPUID_MOD_ID: found family 0x{fam:02X} model "
                    f"0x{mod:02X} ({found.value}), wanted {given.value} (the product asked for)"
                )
            return found, "cpuid", (found,)
        warnings.append(f"CPUID family 0x{fam:02X} model 0x{mod:02X} is not a known SEV-SNP product")
    if given is not None:
        return given, "caller", (given,)
    chip = data[0x1A0:0x1E0]
    if any(chip[:8]) and not any(chip[8:]):
        return Product.TURIN, "chip_id", (Product.TURIN,)
    if version >= 3 and data[0x188] == 0x1A:  # an unknown later part: it uses Turin's TCB layout
        return None, "ambiguous", ()
    return None, "ambiguous", (Product.MILAN, Product.GENOA)


def parse_report(data: bytes, *, product: Product | None = None) -> AttestationReport:
    """Parse and sanity-check an ATTESTATION_REPORT; raise ReportMalformedError on any defect."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("(input)", type(data).__name__, "bytes")
    data = bytes(data)
    if len(data) != REPORT_SIZE:
        raise _fail("(length)", f"{len(data)} bytes", f"exactly {REPORT_SIZE} (0x{REPORT_SIZE:X}) bytes")
    version = _u32(data, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise _fail("VERSION", str(version), "2, 3, 4 or 5")
    algo = _u32(data, 0x034)
    if algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise _fail("SIGNATURE_ALGO", str(algo), "1 (ECDSA P-384 with SHA-384)")
    _require_zero(data, 0x04C, 0x050, "reserved")
    _require_zero(data, 0x188 if version == 2 else 0x18B, 0x1A0, "reserved")
    _require_zero(data, 0x1EB, 0x1EC, "reserved")
    _require_zero(data, 0x1EF, 0x1F0, "reserved")
    _require_zero(data, 0x1F8 if version < 5 else 0x208, 0x2A0, "reserved")
    _require_zero(data, 0x330, REPORT_SIZE, "SIGNATURE reserved")

    warnings: list[str] = []
    policy_raw = _u64(data, 0x008)
    if not policy_raw >> 17 & 1:
        raise _fail("POLICY bit 17", "0", "1 (reserved, must be one)")
    if policy_raw >> 26:
        warnings.append(
            f"POLICY has reserved bits 63:26 set (0x{policy_raw:016x}); a later firmware may define them"
        )
    key_info = _u32(data, 0x048)
    signing_key = key_info >> 2 & 0x7
    if signing_key not in (SigningKey.VCEK, SigningKey.VLEK, SigningKey.NONE):
        warnings.append(f"KEY_INFO.SIGNING_KEY is the reserved value {signing_key}")
    if key_info >> 5:
        warnings.append(f"KEY_INFO has reserved bits 31:5 set (0x{key_info:08x})")

    found, source, candidates = _detect_product(data, version, product, warnings)
    layout = found if found is not None else (Product.TURIN if data[0x188] == 0x1A and version >= 3 else None)
    chip_id = data[0x1A0:0x1E0]
    if layout is Product.TURIN and any(chip_id[8:]):
        raise _fail("CHIP_ID[8:64]", "non-zero bytes", "all zero on Turin (the chip id is 8 bytes)")

    platform_raw = _u64(data, 0x040)
    if platform_raw >> 8:
        warnings.append(f"PLATFORM_INFO has reserved bits 63:8 set (0x{platform_raw:016x})")
    if platform_raw >> 6 & 1 and layout is not Product.TURIN:
        warnings.append("PLATFORM_INFO bit 6 (IOMMU_WRITE_SAFE on Turin) is set on a pre-Turin report")

    def tcb(off: int) -> TcbVersion:
        return TcbVersion.decode(_u64(data, off), layout)

    return AttestationReport(
        version=version,
        guest_svn=_u32(data, 0x004),
        policy=GuestPolicy.decode(policy_raw),
        family_id=data[0x010:0x020],
        image_id=data[0x020:0x030],
        vmpl=_u32(data, 0x030),
        signature_algo=algo,
        current_tcb=tcb(0x038),
        platform_info=PlatformInfo.decode(platform_raw),
        author_key_en=bool(key_info & 1),
        mask_chip_key=bool(key_info >> 1 & 1),
        signing_key=signing_key,
        report_data=data[0x050:0x090],
        measurement=data[0x090:0x0C0],
        host_data=data[0x0C0:0x0E0],
        id_key_digest=data[0x0E0:0x110],
        author_key_digest=data[0x110:0x140],
        report_id=data[0x140:0x160],
        report_id_ma=data[0x160:0x180],
        reported_tcb=tcb(0x180),
        cpuid_fam_id=data[0x188] if version >= 3 else None,
        cpuid_mod_id=data[0x189] if version >= 3 else None,
        cpuid_step=data[0x18A] if version >= 3 else None,
        chip_id=chip_id,
        committed_tcb=tcb(0x1E0),
        current_build=data[0x1E8],
        current_minor=data[0x1E9],
        current_major=data[0x1EA],
        committed_build=data[0x1EC],
        committed_minor=data[0x1ED],
        committed_major=data[0x1EE],
        launch_tcb=tcb(0x1F0),
        launch_mit_vector=_u64(data, 0x1F8) if version >= 5 else None,
        current_mit_vector=_u64(data, 0x200) if version >= 5 else None,
        signature_r=data[0x2A0:0x2E8],
        signature_s=data[0x2E8:0x330],
        product=found,
        product_source=source,
        product_candidates=candidates,
        warnings=tuple(warnings),
        raw=data,
    )


def product_of_report(report: bytes) -> str | None:
    """Return the product named by a report's CPUID bytes (version >= 3), or None when it cannot tell."""
    version = int.from_bytes(report[0:4], "little")
    if version >= 3:
        found = product_from_cpuid(report[0x188], report[0x189])
        return found.value if found is not None else None
    chip = report[0x1A0:0x1E0]
    if any(chip[:8]) and not any(chip[8:]):
        return "Turin"  # a version-2 report with an 8-byte chip id
    return None
