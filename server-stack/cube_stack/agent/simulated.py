"""SIMULATED attestation for dev mode: an AMD-shaped ARK/ASK/VCEK chain made locally, and reports it signs.

There is no SEV-SNP hardware behind this provider. It exists so that ``cube-stack up`` on a laptop runs the
client's verification path end to end (DESIGN.md §1.6): the client accepts these reports only when its
policy names this simulated root explicitly (``{"root_of_trust": {"simulated": "<ark_fingerprint()>"}}``),
and every log line of this module says SIMULATED.

The chain meets the contract of ``cube_lsp.attestation.verify`` (its module docstring), so the verifier runs
exactly the checks it runs for AMD's chains:

* ARK: RSA (4096 bits by default, as AMD's), self-signed, CA, CN ``SIMULATED ARK-<Product>``;
* ASK: RSA, CA, CN ``SEV-<Product>`` (the contract fixes it), signed by the ARK;
* VCEK: EC P-384, CN ``SEV-VCEK`` (fixed too), signed by the ASK, carrying AMD's extensions
  (1.3.6.1.4.1.3704.1.*: structVersion, productName, the bl/tee/snp/ucode SPLs, fmc on Turin, hwID);
* every signature RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48. Every subject has
  ``OU=SIMULATED (cube-lsp dev mode, not AMD)`` and ``O=cube-lsp`` instead of AMD's names.

Reports are well formed (version 3 or 5; Milan, Genoa or Turin by CPUID) with the caller's REPORT_DATA, a
configurable MEASUREMENT (default :data:`SIMULATED_MEASUREMENT`, the SHA-384 of
``b"cube-simulated-measurement"``), POLICY (debug off unless asked), VMPL, one TCB used for current,
reported, committed and launch TCB and for the VCEK's SPLs, CHIP_ID equal to the VCEK's hwID, equal
current and committed firmware, PLATFORM_INFO, and the ECDSA P-384 signature over bytes 0..0x29F with r and s
little-endian, zero-padded to 72 bytes, as AMD's firmware writes it. The certificate table carries the
VCEK, the ASK and the ARK.

Keys live in memory. With ``data_dir`` set (an explicit choice), the ARK, the ASK and the chip id are kept in
``<data_dir>/simulated-sev-<product>.json`` (mode 0600, directory 0700) so that restarts keep the root
fingerprint clients pinned; the VCEK is issued afresh at every start for the configured TCB, as AMD issues
one per chip and TCB. A persisted file that is unreadable, inconsistent or readable by others is an error,
never silently replaced (that would change the fingerprint): delete it to make a new root.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import stat
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from cube_stack.agent.errors import AgentSettingsError, SimulatedStateError
from cube_stack.agent.evidence import Evidence, check_report_data
from cube_wire.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, build_cert_table, fingerprint
from cube_wire.report import REPORT_SIZE, SIGNED_SIZE, Product

log = logging.getLogger(__name__)

SIMULATED_MEASUREMENT = hashlib.sha384(b"cube-simulated-measurement").digest()
"""The default launch MEASUREMENT of simulated reports: SHA-384 of ``b"cube-simulated-measurement"``."""
SIMULATED_OU = "SIMULATED (cube-lsp dev mode, not AMD)"
STATE_FORMAT = "cube-simulated-sev-root-v1"

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_AMD_OID = "1.3.6.1.4.1.3704.1"
# CPUID family, model, stepping written at 0x188 in version >= 3 reports (snp.md §1.4).
_CPUID = {
    Product.MILAN: (0x19, 0x01, 0x01),
    Product.GENOA: (0x19, 0x11, 0x01),
    Product.TURIN: (0x1A, 0x02, 0x01),
}
_PRODUCT_NAME = {Product.MILAN: "Milan-B0", Product.GENOA: "Genoa", Product.TURIN: "Turin"}
_ROOT_DAYS = 25 * 365
_VCEK_DAYS = 7 * 365
_SKEW = timedelta(days=1)  # notBefore slack for hosts whose clocks disagree


@dataclass(frozen=True)
class SimulatedTcb:
    """One TCB_VERSION, by component; ``fmc`` exists on Turin only (ignored elsewhere)."""

    bootloader: int = 4
    tee: int = 0
    snp: int = 24
    microcode: int = 219
    fmc: int = 0

    def raw(self, product: Product) -> int:
        """Return the u64 TCB_VERSION in ``product``'s layout (snp.md §1.3)."""
        if product is Product.TURIN:
            layout = [self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode]
        else:
            layout = [self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode]
        return int.from_bytes(bytes(layout), "little")

    def spls(self, product: Product) -> dict[str, int]:
        """Return the VCEK SPL extensions (OID suffix -> value) for this TCB."""
        out = {"3.1": self.bootloader, "3.2": self.tee, "3.3": self.snp, "3.8": self.microcode}
        if product is Product.TURIN:
            out["3.9"] = self.fmc
        else:
            out |= {"3.4": 0, "3.5": 0, "3.6": 0, "3.7": 0}
        return out


@dataclass(frozen=True)
class SimulatedOptions:
    """What simulated reports say; every field has a default, validated on construction."""

    product: Product = Product.MILAN  # the product line: CPUID bytes, ASK name, TCB layout
    version: int = 3  # report VERSION: 3 or 5 (Turin reports are 5 on real hardware)
    measurement: bytes = SIMULATED_MEASUREMENT  # 48-byte launch digest; default: the documented constant
    host_data: bytes = bytes(32)  # 32-byte HOST_DATA; default: zero
    debug: bool = False  # POLICY.DEBUG; a default client policy rejects reports with it set
    smt: bool = True  # POLICY.SMT
    migrate_ma: bool = False  # POLICY.MIGRATE_MA
    abi: tuple[int, int] = (0, 0)  # POLICY.ABI_MAJOR, ABI_MINOR
    vmpl: int = 0  # VMPL (0..3)
    guest_svn: int = 0  # GUEST_SVN
    tcb: SimulatedTcb = field(default_factory=SimulatedTcb)  # every TCB field and the VCEK's SPLs
    firmware: tuple[int, int, int] = (1, 55, 21)  # (major, minor, build), current and committed
    platform_info: int = 0x25  # PLATFORM_INFO: SMT_EN | ECC_EN | ALIAS_CHECK_COMPLETE
    data_dir: Path | None = None  # keep the ARK/ASK here (0600) across restarts; unset: memory only
    rsa_bits: int = 4096  # ARK/ASK key size (AMD's is 4096; 2048 makes tests fast)

    def __post_init__(self) -> None:
        """Validate every field, naming the first bad one."""
        if not isinstance(self.product, Product):
            try:
                object.__setattr__(self, "product", Product(self.product))
            except ValueError:
                raise AgentSettingsError(
                    "product", f"found {self.product!r}, wanted Milan, Genoa or Turin"
                ) from None
        if self.version not in (3, 5):
            raise AgentSettingsError("version", f"found {self.version!r}, wanted 3 or 5")
        for name, size in (("measurement", 48), ("host_data", 32)):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != size:
                raise AgentSettingsError(name, f"found {value!r:.40}, wanted {size} bytes")
        if not isinstance(self.vmpl, int) or not 0 <= self.vmpl <= 3:
            raise AgentSettingsError("vmpl", f"found {self.vmpl!r}, wanted 0..3")
        for name, values, hi in (
            ("abi", self.abi, 255),
            ("firmware", self.firmware, 255),
            ("tcb", (self.tcb.bootloader, self.tcb.tee, self.tcb.snp, self.tcb.microcode, self.tcb.fmc), 255),
            ("guest_svn", (self.guest_svn,), 2**32 - 1),
            ("platform_info", (self.platform_info,), 255),
        ):
            if not all(isinstance(v, int) and 0 <= v <= hi for v in values):
                raise AgentSettingsError(name, f"found {values!r}, wanted integers in 0..{hi}")
        if self.rsa_bits not in (2048, 3072, 4096):
            raise AgentSettingsError("rsa_bits", f"found {self.rsa_bits!r}, wanted 2048, 3072 or 4096")

    @property
    def policy(self) -> int:
        """Return the guest POLICY word (bit 17 is reserved and always one)."""
        bits = 1 << 17 | self.smt << 16 | self.migrate_ma << 18 | self.debug << 19
        return bits | self.abi[0] << 8 | self.abi[1]


# --------------------------------------------------------------------------------------------- the root


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SIMULATED_OU),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cube-lsp"),
        ]
    )


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    body = text.encode("ascii")
    return bytes([0x16, len(body)]) + body


def _ca_cert(
    subject: x509.Name, issuer: x509.Name, key: rsa.RSAPrivateKey, signer: rsa.RSAPrivateKey, now: datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + timedelta(days=_ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer, hashes.SHA384(), rsa_padding=_PSS)
    )


@dataclass(frozen=True)
class SimulatedRoot:
    """The simulated ARK and ASK (keys and certificates) and the simulated chip's CHIP_ID."""

    product: Product
    ark_key: rsa.RSAPrivateKey = field(repr=False)
    ark_cert: x509.Certificate
    ask_key: rsa.RSAPrivateKey = field(repr=False)
    ask_cert: x509.Certificate
    chip_id: bytes = field(repr=False)  # 64 bytes; on Turin only the first 8 are used

    @classmethod
    def generate(cls, product: Product, *, rsa_bits: int = 4096) -> SimulatedRoot:
        """Make a fresh ARK and ASK for ``product`` and a random chip id."""
        now = datetime.now(UTC)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ark_name = _name(f"SIMULATED ARK-{product.value}")
        ark = _ca_cert(ark_name, ark_name, ark_key, ark_key, now)
        ask = _ca_cert(_name(f"SEV-{product.value}"), ark_name, ask_key, ark_key, now)
        chip = bytearray(secrets.token_bytes(64))
        chip[0] |= 1  # an all-zero CHIP_ID means "masked"; ours never is
        if product is Product.TURIN:
            chip[8:] = bytes(56)
        return cls(product, ark_key, ark, ask_key, ask, bytes(chip))

    @classmethod
    def load_or_create(cls, data_dir: Path, product: Product, *, rsa_bits: int = 4096) -> SimulatedRoot:
        """Load ``<data_dir>/simulated-sev-<product>.json``, or create it (0600) when it does not exist."""
        path = state_path(data_dir, product)
        if not path.exists():
            root = cls.generate(product, rsa_bits=rsa_bits)
            if root._write_new(path):
                log.warning(
                    "agent.simulated_root_created SIMULATED root of trust written to %s (ark sha256=%s)",
                    path,
                    fingerprint(root.ark_cert),
                    extra={"event": "agent.simulated_root_created"},
                )
                return root
        return cls._load(path, product)

    def _write_new(self, path: Path) -> bool:
        """Write atomically; return False when another process created the file first (theirs wins)."""
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SimulatedStateError(
                f"simulated root directory {path.parent}: cannot be created ({exc})"
            ) from None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        data = json.dumps(self._to_json(), indent=2).encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if the file appeared meanwhile: never overwrite a pinned root
            except FileExistsError:
                return False
            finally:
                tmp.unlink()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SimulatedStateError(f"simulated root {path}: cannot be written ({exc})") from None
        return True

    def _to_json(self) -> dict[str, Any]:
        def key_pem(key: rsa.RSAPrivateKey) -> str:
            return key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode("ascii")

        def cert_pem(cert: x509.Certificate) -> str:
            return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

        return {
            "format": STATE_FORMAT,
            "warning": "SIMULATED SEV-SNP root for cube-lsp dev mode; it proves nothing about hardware",
            "product": self.product.value,
            "chip_id": self.chip_id.hex(),
            "ark_key": key_pem(self.ark_key),
            "ark_cert": cert_pem(self.ark_cert),
            "ask_key": key_pem(self.ask_key),
            "ask_cert": cert_pem(self.ask_cert),
        }

    @classmethod
    def _load(cls, path: Path, product: Product) -> SimulatedRoot:
        def bad(message: str) -> SimulatedStateError:
            return SimulatedStateError(
                f"simulated root {path}: {message} (delete the file to make a new root)"
            )

        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise bad(f"cannot be opened ({exc.strerror})") from None
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise bad("found something other than a regular file")
            if mode & 0o077:
                raise SimulatedStateError(
                    f"simulated root {path}: found mode {stat.S_IMODE(mode):04o}, "
                    "wanted 0600 (it holds private keys)",
                    code="agent.simulated_state_insecure",
                )
            raw = fh.read()
        try:
            doc = json.loads(raw)
            if doc.get("format") != STATE_FORMAT:
                raise bad(f"found format {doc.get('format')!r}, wanted {STATE_FORMAT!r}")
            if doc.get("product") != product.value:
                raise bad(f"found product {doc.get('product')!r}, wanted {product.value!r}")
            chip = bytes.fromhex(doc["chip_id"])
            ark_key = serialization.load_pem_private_key(doc["ark_key"].encode(), password=None)
            ask_key = serialization.load_pem_private_key(doc["ask_key"].encode(), password=None)
            ark = x509.load_pem_x509_certificate(doc["ark_cert"].encode())
            ask = x509.load_pem_x509_certificate(doc["ask_cert"].encode())
        except SimulatedStateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise bad(f"is not a simulated root file ({type(exc).__name__}: {exc})") from None
        if not isinstance(ark_key, rsa.RSAPrivateKey) or not isinstance(ask_key, rsa.RSAPrivateKey):
            raise bad("found keys that are not RSA")
        if len(chip) != 64 or not any(chip) or (product is Product.TURIN and any(chip[8:])):
            raise bad("found a chip_id of the wrong shape")
        for key, cert, what in ((ark_key, ark, "ARK"), (ask_key, ask, "ASK")):
            if key.public_key() != cert.public_key():
                raise bad(f"the {what} key does not match the {what} certificate")
        try:
            ark.verify_directly_issued_by(ark)
            ask.verify_directly_issued_by(ark)
        except (ValueError, TypeError, InvalidSignature):
            raise bad("the ASK is not signed by the ARK") from None
        return cls(product, ark_key, ark, ask_key, ask, chip)

    def issue_vcek(self, key: ec.EllipticCurvePrivateKey, tcb: SimulatedTcb) -> x509.Certificate:
        """Return a VCEK certificate for ``key``, this chip and ``tcb``, signed by the ASK."""
        now = datetime.now(UTC)
        product = self.product
        hwid = self.chip_id[:8] if product is Product.TURIN else self.chip_id
        amd = [
            ("1", _der_integer(1 if product is Product.TURIN else 0)),  # structVersion
            ("2", _der_ia5(_PRODUCT_NAME[product])),  # productName
            *((suffix, _der_integer(value)) for suffix, value in tcb.spls(product).items()),
            ("4", hwid),  # hwID: raw bytes, as AMD writes it
        ]
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK"))
            .issuer_name(self.ask_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())  # AMD uses 0, which cryptography warns about
            .not_valid_before(now - _SKEW)
            .not_valid_after(now + timedelta(days=_VCEK_DAYS))
        )
        for suffix, value in amd:
            oid = x509.ObjectIdentifier(f"{_AMD_OID}.{suffix}")
            builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        return builder.sign(self.ask_key, hashes.SHA384(), rsa_padding=_PSS)


def state_path(data_dir: Path, product: Product) -> Path:
    """Return the file a persisted simulated root for ``product`` lives in."""
    return Path(data_dir) / f"simulated-sev-{product.value.lower()}.json"


# --------------------------------------------------------------------------------------------- the provider


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class SimulatedProvider:
    """An :class:`~cube_stack.agent.evidence.AttestationProvider` that signs SIMULATED reports."""

    name = "simulated"
    simulated = True

    def __init__(self, options: SimulatedOptions | None = None, *, root: SimulatedRoot | None = None) -> None:
        self.options = opts = options or SimulatedOptions()
        if root is None:
            if opts.data_dir is not None:
                root = SimulatedRoot.load_or_create(opts.data_dir, opts.product, rsa_bits=opts.rsa_bits)
            else:
                root = SimulatedRoot.generate(opts.product, rsa_bits=opts.rsa_bits)
        elif root.product is not opts.product:
            raise AgentSettingsError(
                "root", f"found a {root.product.value} root, wanted one for {opts.product.value}"
            )
        self.root = root
        self._vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.vcek_cert = root.issue_vcek(self._vcek_key, opts.tcb)
        self._report_id = secrets.token_bytes(32)  # per guest, stable for its life (here: this provider)
        self._table = build_cert_table(
            [
                (GUID_VCEK, _der(self.vcek_cert)),
                (GUID_ASK, _der(root.ask_cert)),
                (GUID_ARK, _der(root.ark_cert)),
            ]
        )
        log.warning(
            "agent.simulated SIMULATED attestation provider: reports are signed by a locally made "
            "SIMULATED chain, NOT by AMD hardware; clients accept them only with root_of_trust "
            "simulated=%s (product %s, measurement %s%s)",
            self.ark_fingerprint(),
            opts.product.value,
            opts.measurement.hex(),
            ", DEBUG policy bit set" if opts.debug else "",
            extra={"event": "agent.simulated"},
        )

    @property
    def product(self) -> Product:
        """Return the simulated product line."""
        return self.options.product

    def ark_pem(self) -> bytes:
        """Return the simulated ARK certificate in PEM (for ``TrustedRoot.from_pem``)."""
        return self.root.ark_cert.public_bytes(serialization.Encoding.PEM)

    def ark_fingerprint(self) -> str:
        """Return the SHA-256 of the simulated ARK's DER: the policy's ``root_of_trust.simulated`` value."""
        return fingerprint(self.root.ark_cert)

    def certificate_table(self) -> bytes:
        """Return the GUID certificate table (VCEK, ASK, ARK) sent with every report."""
        return self._table

    def client_policy(self) -> dict[str, Any]:
        """Return a client policy (JSON-ready) that accepts this provider's reports and nothing else."""
        opts = self.options
        return {
            "version": 1,
            "measurements": [opts.measurement.hex()],
            "host_data": [opts.host_data.hex()],
            "vmpls": [opts.vmpl],
            "products": [opts.product.value],
            "root_of_trust": {"simulated": self.ark_fingerprint()},
        }

    def build_report(self, report_data: bytes) -> bytes:
        """Return a signed 0x4A0-byte report carrying ``report_data``."""
        data = check_report_data(report_data)
        opts, product = self.options, self.options.product
        tcb = opts.tcb.raw(product)
        major, minor, build = opts.firmware
        buf = bytearray(REPORT_SIZE)
        struct.pack_into("<IIQ", buf, 0x000, opts.version, opts.guest_svn, opts.policy)
        struct.pack_into("<IIQQI", buf, 0x030, opts.vmpl, 1, tcb, opts.platform_info, 0)  # KEY_INFO: VCEK
        buf[0x050:0x090] = data
        buf[0x090:0x0C0] = opts.measurement
        buf[0x0C0:0x0E0] = opts.host_data
        buf[0x140:0x160] = self._report_id
        buf[0x160:0x180] = b"\xff" * 32  # REPORT_ID_MA: no migration agent
        struct.pack_into("<Q", buf, 0x180, tcb)  # REPORTED_TCB: what the VCEK was issued for
        buf[0x188:0x18B] = bytes(_CPUID[product])
        buf[0x1A0:0x1E0] = self.root.chip_id
        struct.pack_into("<Q", buf, 0x1E0, tcb)  # COMMITTED_TCB
        buf[0x1E8:0x1EB] = bytes((build, minor, major))  # CURRENT_BUILD, _MINOR, _MAJOR
        buf[0x1EC:0x1EF] = bytes((build, minor, major))  # COMMITTED_*
        struct.pack_into("<Q", buf, 0x1F0, tcb)  # LAUNCH_TCB
        signature = self._vcek_key.sign(bytes(buf[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(signature)
        buf[0x2A0:0x2E8] = r.to_bytes(72, "little")
        buf[0x2E8:0x330] = s.to_bytes(72, "little")
        return bytes(buf)

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a SIMULATED report for ``report_data`` with the VCEK/ASK/ARK certificate table."""
        report = self.build_report(report_data)
        log.debug(
            "agent.report provider=simulated SIMULATED report signed (root %s)",
            self.ark_fingerprint()[:16],
            extra={"event": "agent.report"},
        )
        return Evidence(report=report, certificates=self._table)
