"""A fake AMD-shaped certificate chain and report signer, generated at test time (no private key is
committed).

Modelled on go-sev-guest's testing/fake_certs.go: an RSA ARK and ASK (RSASSA-PSS SHA-384, salt 48) and an EC
P-384 VCEK/VLEK carrying AMD's SPL and hwID extensions; ``make_report`` builds a report with the given fields
and signs it with the leaf key exactly as the firmware does (r, s little-endian, zero-padded to 72 bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cube_lsp.attestation import Product

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
AMD = "1.3.6.1.4.1.3704.1"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
MILAN_CHIP = bytes(range(1, 65))
TURIN_CHIP = bytes(range(1, 9)) + bytes(56)


@cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    """Return a per-label RSA-2048 key, generated once per test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    """Return a per-label P-384 key, generated once per test session."""
    return ec.generate_private_key(ec.SECP384R1())


def name(cn: str, *, amd: bool = True) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if amd:
        attrs = [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            *attrs,
        ]
    return x509.Name(attrs)


def _int_ext(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


@dataclass(frozen=True)
class Tcb:
    bootloader: int = 3
    tee: int = 0
    snp: int = 8
    microcode: int = 115
    fmc: int = 0

    def raw(self, product: Product) -> int:
        if product is Product.TURIN:
            b = bytes([self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        else:
            b = bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])
        return int.from_bytes(b, "little")


@dataclass
class FakeChain:
    product: Product
    kind: str  # "VCEK" or "VLEK"
    ark: x509.Certificate
    ask: x509.Certificate
    leaf: x509.Certificate
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    tcb: Tcb = field(default_factory=Tcb)

    def der(self, which: str) -> bytes:
        return getattr(self, which).public_bytes(serialization.Encoding.DER)

    def pem(self, which: str) -> bytes:
        return getattr(self, which).public_bytes(serialization.Encoding.PEM)


def make_chain(
    product: Product = Product.MILAN,
    *,
    kind: str = "VCEK",
    tcb: Tcb | None = None,
    hwid: bytes | None = None,
    label: str = "sim",
    leaf_not_before: datetime = T0,
    leaf_days: int = 365,
    ask_serial: int = 0x10001,
    leaf_serial: int = 7,
    amd_names: bool = True,
) -> FakeChain:
    """Build ARK -> ASK/ASVK -> VCEK/VLEK; keys are cached per label (same label: same keys)."""
    tcb = tcb or Tcb()
    ark_key, ask_key, leaf_key = rsa_key(f"{label}-ark"), rsa_key(f"{label}-ask"), ec_key(f"{label}-leaf")
    ark_name = name(f"ARK-{product.value}", amd=amd_names)
    ask_cn = f"SEV-VLEK-{product.value}" if kind == "VLEK" else f"SEV-{product.value}"
    ask_name = name(ask_cn, amd=amd_names)
    ca = x509.BasicConstraints(ca=True, path_length=None)
    ark = (
        x509.CertificateBuilder()
        .subject_name(ark_name)
        .issuer_name(ark_name)
        .public_key(ark_key.public_key())
        .serial_number(0x10000)
        .not_valid_before(T0 - timedelta(days=365))
        .not_valid_after(T0 + timedelta(days=25 * 365))
        .add_extension(ca, critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=PSS)
    )
    ask = (
        x509.CertificateBuilder()
        .subject_name(ask_name)
        .issuer_name(ark_name)
        .public_key(ask_key.public_key())
        .serial_number(ask_serial)
        .not_valid_before(T0 - timedelta(days=365))
        .not_valid_after(T0 + timedelta(days=25 * 365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ark_key, hashes.SHA384(), rsa_padding=PSS)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(f"SEV-{kind}", amd=amd_names))
        .issuer_name(ask_name)
        .public_key(leaf_key.public_key())
        .serial_number(leaf_serial)
        .not_valid_before(leaf_not_before)
        .not_valid_after(leaf_not_before + timedelta(days=leaf_days))
    )
    exts = {
        f"{AMD}.1": _int_ext(1 if product is Product.TURIN else 0),
        f"{AMD}.2": b"\x16" + bytes([len(product.value)]) + product.value.encode(),
        f"{AMD}.3.1": _int_ext(tcb.bootloader),
        f"{AMD}.3.2": _int_ext(tcb.tee),
        f"{AMD}.3.3": _int_ext(tcb.snp),
        f"{AMD}.3.8": _int_ext(tcb.microcode),
    }
    if product is Product.TURIN:
        exts[f"{AMD}.3.9"] = _int_ext(tcb.fmc)
    if kind == "VCEK":
        exts[f"{AMD}.4"] = (
            hwid if hwid is not None else (TURIN_CHIP[:8] if product is Product.TURIN else MILAN_CHIP)
        )
    else:
        exts[f"{AMD}.5"] = b"\x16\x0fCN=fake-csp.tld"
    for oid, value in exts.items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
        )
    leaf = builder.sign(ask_key, hashes.SHA384(), rsa_padding=PSS)
    return FakeChain(product, kind, ark, ask, leaf, ark_key, ask_key, leaf_key, tcb)


_CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}


def make_report(
    chain: FakeChain | None,
    *,
    version: int = 3,
    product: Product | None = None,
    policy: int = 0x30000,
    vmpl: int = 0,
    guest_svn: int = 0,
    measurement: bytes = b"\x11" * 48,
    report_data: bytes = bytes(64),
    host_data: bytes = bytes(32),
    id_key_digest: bytes = bytes(48),
    author_key_digest: bytes = bytes(48),
    author_key_en: bool = False,
    family_id: bytes = bytes(16),
    image_id: bytes = bytes(16),
    report_id: bytes = b"\x22" * 32,
    platform_info: int = 0x1,
    signing_key: int | None = None,
    current_tcb: Tcb | None = None,
    reported_tcb: Tcb | None = None,
    committed_tcb: Tcb | None = None,
    launch_tcb: Tcb | None = None,
    chip_id: bytes | None = None,
    current_fw: tuple[int, int, int] = (1, 55, 30),
    committed_fw: tuple[int, int, int] | None = None,
    mit_vectors: tuple[int, int] = (0, 0),
    sign: bool = True,
) -> bytes:
    """Return a 0x4A0-byte report, signed by ``chain.leaf_key`` unless ``sign`` is false."""
    product = product or (chain.product if chain else Product.MILAN)
    base = chain.tcb if chain else Tcb()
    buf = bytearray(0x4A0)
    if signing_key is None:
        signing_key = 1 if chain is not None and chain.kind == "VLEK" else 0
    if chip_id is None:
        if chain is not None and chain.kind == "VLEK":
            chip_id = bytes(64)
        else:
            chip_id = TURIN_CHIP if product is Product.TURIN else MILAN_CHIP
    struct.pack_into("<IIQ", buf, 0, version, guest_svn, policy)
    buf[0x10:0x20], buf[0x20:0x30] = family_id, image_id
    struct.pack_into("<II", buf, 0x30, vmpl, 1)
    struct.pack_into("<QQ", buf, 0x38, (current_tcb or base).raw(product), platform_info)
    struct.pack_into("<I", buf, 0x48, int(author_key_en) | signing_key << 2)
    buf[0x50:0x90], buf[0x90:0xC0], buf[0xC0:0xE0] = report_data, measurement, host_data
    buf[0xE0:0x110], buf[0x110:0x140], buf[0x140:0x160] = id_key_digest, author_key_digest, report_id
    buf[0x160:0x180] = b"\xff" * 32
    struct.pack_into("<Q", buf, 0x180, (reported_tcb or base).raw(product))
    if version >= 3:
        buf[0x188:0x18B] = bytes(_CPUID[product])
    buf[0x1A0:0x1E0] = chip_id
    struct.pack_into("<Q", buf, 0x1E0, (committed_tcb or current_tcb or base).raw(product))
    major, minor, build = current_fw
    cmaj, cmin, cbuild = committed_fw or current_fw
    buf[0x1E8:0x1EB], buf[0x1EC:0x1EF] = bytes([build, minor, major]), bytes([cbuild, cmin, cmaj])
    struct.pack_into("<Q", buf, 0x1F0, (launch_tcb or current_tcb or base).raw(product))
    if version >= 5:
        struct.pack_into("<QQ", buf, 0x1F8, *mit_vectors)
    if sign and chain is not None:
        der = chain.leaf_key.sign(bytes(buf[:0x2A0]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        buf[0x2A0:0x2E8] = r.to_bytes(72, "little")
        buf[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(buf)


def make_crl(
    chain: FakeChain,
    revoked: tuple[int, ...] = (),
    *,
    this_update: datetime = T0,
    days: int = 30,
    signer: rsa.RSAPrivateKey | None = None,
) -> bytes:
    """Return a DER CRL issued by the chain's ARK (or signed by ``signer`` to forge one)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(chain.ark.subject)
        .last_update(this_update)
        .next_update(this_update + timedelta(days=days))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this_update).build()
        )
    crl = builder.sign(signer or chain.ark_key, hashes.SHA384(), rsa_padding=PSS)
    return crl.public_bytes(serialization.Encoding.DER)


def cert_table(entries: list[tuple[str, bytes]]) -> bytes:
    """Build a GHCB certificate table: {GUID, offset, length}... zero entry, then the blobs."""
    import uuid

    header = 24 * (len(entries) + 1)
    table, blobs = bytearray(), bytearray()
    for guid, blob in entries:
        table += uuid.UUID(guid).bytes + struct.pack("<II", header + len(blobs), len(blob))
        blobs += blob
    return bytes(table + bytes(24) + blobs)
