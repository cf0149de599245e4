"""report.py: every shared vector parses to its expected fields; malformed input is report_malformed."""

from __future__ import annotations

import random
import struct

import pytest

from cube_lsp.attestation import (
    REPORT_SIZE,
    AttestationError,
    GuestPolicy,
    PlatformInfo,
    Product,
    SigningKey,
    TcbVersion,
    parse_report,
    product_from_cpuid,
    verify_report,
)
from tests.attestation import fakes
from tests.attestation.vectors import REPORTS, SNP, certs_for, options_at, report_bytes

TCB_NAMES = {"bl": "bootloader", "tee": "tee", "snp": "snp", "ucode": "microcode", "fmc": "fmc"}


@pytest.mark.parametrize("vid", sorted(REPORTS))
def test_vector_parses_to_expected_fields(vid: str) -> None:
    want = REPORTS[vid]
    raw = report_bytes(vid)
    import hashlib

    assert hashlib.sha256(raw).hexdigest() == want["report_sha256"]
    r = parse_report(raw)
    assert r.version == want["version"]
    assert r.guest_svn == want["guest_svn"]
    assert r.policy.raw == int(want["policy"], 16)
    assert r.vmpl == want["vmpl"]
    assert r.signature_algo == want["signature_algo"]
    assert r.platform_info.raw == int(want["platform_info"], 16)
    assert r.signing_key == want["signing_key"]
    assert r.author_key_en == bool(want["author_key_en"])
    assert r.mask_chip_key == bool(want["mask_chip_key"])
    assert str(r.current_firmware) == want["current_fw"]
    assert str(r.committed_firmware) == want["committed_fw"]
    for name in (
        "measurement",
        "report_data",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "report_id",
    ):
        assert getattr(r, name).hex() == want[name], name
    for name in ("report_id_ma", "chip_id", "family_id", "image_id"):
        assert getattr(r, name).hex() == want[name], name
    for kind in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        tcb: TcbVersion = getattr(r, kind)
        assert tcb.raw == int(want[kind]["raw"], 16)
        assert tcb.components() == {TCB_NAMES[k]: v for k, v in want[kind].items() if k != "raw"}
    assert r.policy.debug == want["debug"]
    assert r.policy.migrate_ma == want["migrate_ma"]
    assert r.policy.smt == want["smt_allowed"]
    assert r.policy.single_socket == want["single_socket"]
    if "cpuid_fam" in want:
        assert (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) == (
            want["cpuid_fam"],
            want["cpuid_mod"],
            want["cpuid_step"],
        )
    else:
        assert r.cpuid_fam_id is None
    if "launch_mit_vector" in want:
        assert r.launch_mit_vector == int(want["launch_mit_vector"], 16)
        assert r.current_mit_vector == int(want["current_mit_vector"], 16)
    else:
        assert r.launch_mit_vector is None and r.current_mit_vector is None
    if want.get("product"):
        assert Product(want["product"]) in r.product_candidates
        if r.version >= 3:
            assert r.product is Product(want["product"]) and r.product_source == "cpuid"
    assert r.signed_bytes == raw[:0x2A0]
    assert r.warnings == ()


def test_cocos_report_with_trailing_cert_table_parses_the_first_0x4a0_bytes() -> None:
    blob = (SNP / "cocos" / "attestation.bin").read_bytes()
    r = parse_report(blob[:REPORT_SIZE])
    assert r.vmpl == 2 and r.version == 2
    with pytest.raises(AttestationError) as err:
        parse_report(blob)
    assert err.value.code == "attestation.report_malformed"


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [
        (0x19, 0x01, Product.MILAN),
        (0x19, 0x00, Product.MILAN),
        (0x19, 0x0F, Product.MILAN),
        (0x19, 0x11, Product.GENOA),
        (0x19, 0x10, Product.GENOA),
        (0x19, 0xA0, Product.GENOA),  # Siena
        (0x19, 0xAF, Product.GENOA),  # Bergamo range
        (0x1A, 0x02, Product.TURIN),
        (0x1A, 0x11, Product.TURIN),
        (0x1A, 0x50, None),  # Venice: no public certificates
        (0x19, 0x30, None),
        (0x17, 0x01, None),
    ],
)
def test_product_from_cpuid(family: int, model: int, product: Product | None) -> None:
    assert product_from_cpuid(family, model) is product


def test_tcb_layouts_from_snp_md() -> None:
    milan = TcbVersion.decode(0xDB18000000000004, Product.MILAN)
    assert milan.components() == {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}
    turin = TcbVersion.decode(0x4700000002000100, Product.TURIN)
    assert turin.components() == {"bootloader": 1, "tee": 0, "snp": 2, "microcode": 71, "fmc": 0}


def test_guest_policy_and_platform_info_bits() -> None:
    p = GuestPolicy.decode(0x3FF_1F05 | 1 << 17)
    assert (p.abi_major, p.abi_minor) == (0x1F, 0x05)
    assert all(getattr(p, n) for n in GuestPolicy.BIT_NAMES)
    assert not any(getattr(GuestPolicy.decode(1 << 17), n) for n in GuestPolicy.BIT_NAMES)
    info = PlatformInfo.decode(0x67)
    assert info.smt_enabled and info.tsme_enabled and info.ecc_enabled and not info.rapl_disabled
    assert info.alias_check_complete and info.iommu_write_safe and not info.tio_enabled


def _set(raw: bytes, off: int, value: bytes) -> bytes:
    buf = bytearray(raw)
    buf[off : off + len(value)] = value
    return bytes(buf)


def _u32(v: int) -> bytes:
    return struct.pack("<I", v)


MILAN_V3 = fakes.make_report(None, version=3)
MILAN_V2 = fakes.make_report(None, version=2)
TURIN_V5 = fakes.make_report(None, version=5, product=Product.TURIN)

MALFORMED = {
    "empty": b"",
    "one byte": b"\x02",
    "truncated by one": MILAN_V3[:-1],
    "truncated to the signed part": MILAN_V3[:0x2A0],
    "oversized by one": MILAN_V3 + b"\x00",
    "doubled": MILAN_V3 * 2,
    "version 0": _set(MILAN_V3, 0, _u32(0)),
    "version 1": _set(MILAN_V3, 0, _u32(1)),
    "version 6": _set(MILAN_V3, 0, _u32(6)),
    "version max": _set(MILAN_V3, 0, _u32(0xFFFFFFFF)),
    "signature algo 0": _set(MILAN_V3, 0x34, _u32(0)),
    "signature algo 2": _set(MILAN_V3, 0x34, _u32(2)),
    "reserved 0x4c": _set(MILAN_V3, 0x4C, b"\x01"),
    "reserved after cpuid (v3)": _set(MILAN_V3, 0x18B, b"\x01"),
    "cpuid bytes in a v2 report": _set(MILAN_V2, 0x188, b"\x19"),
    "reserved 0x1eb": _set(MILAN_V3, 0x1EB, b"\x01"),
    "reserved 0x1ef": _set(MILAN_V3, 0x1EF, b"\x01"),
    "mitigation vector in a v3 report": _set(MILAN_V3, 0x1F8, b"\x01"),
    "reserved 0x29f": _set(MILAN_V3, 0x29F, b"\x01"),
    "reserved v5 0x208": _set(TURIN_V5, 0x208, b"\x01"),
    "signature reserved 0x330": _set(MILAN_V3, 0x330, b"\x01"),
    "signature reserved last byte": _set(MILAN_V3, REPORT_SIZE - 1, b"\x01"),
    "policy bit 17 clear": _set(MILAN_V3, 0x08, struct.pack("<Q", 0x10000)),
    "turin chip id beyond 8 bytes": _set(TURIN_V5, 0x1A8, b"\x01"),
    "all 0xff": b"\xff" * REPORT_SIZE,
    "all zero": bytes(REPORT_SIZE),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_reports_are_report_malformed(case: str) -> None:
    with pytest.raises(AttestationError) as err:
        parse_report(MALFORMED[case])
    assert err.value.code == "attestation.report_malformed"


@pytest.mark.parametrize("value", ["a string", None, 1184, [0] * 1184])
def test_non_bytes_input_is_report_malformed(value: object) -> None:
    with pytest.raises(AttestationError) as err:
        parse_report(value)  # type: ignore[arg-type]
    assert err.value.code == "attestation.report_malformed"


def test_version_4_parses_like_version_3() -> None:
    r = parse_report(_set(MILAN_V3, 0, _u32(4)))
    assert r.version == 4 and r.product is Product.MILAN and r.cpuid_fam_id == 0x19


def test_reserved_bits_a_later_firmware_may_define_are_warnings() -> None:
    raw = _set(MILAN_V3, 0x08, struct.pack("<Q", 0x30000 | 1 << 40))
    raw = _set(raw, 0x40, struct.pack("<Q", 1 | 1 << 6 | 1 << 12))
    raw = _set(raw, 0x48, _u32(1 << 9 | 5 << 2))
    r = parse_report(raw)
    assert len(r.warnings) == 5, r.warnings
    assert r.signer is None  # SIGNING_KEY 5 is reserved


def test_turin_platform_info_bit_6_is_no_warning() -> None:
    raw = fakes.make_report(None, version=5, product=Product.TURIN, platform_info=0x67)
    assert parse_report(raw).warnings == ()


def test_v2_product_comes_from_the_caller_or_the_chip_id() -> None:
    r = parse_report(MILAN_V2)
    assert r.product is None and r.product_candidates == (Product.MILAN, Product.GENOA)
    assert r.product_source == "ambiguous"
    assert parse_report(MILAN_V2, product=Product.GENOA).product is Product.GENOA
    turin_v2 = fakes.make_report(None, version=2, product=Product.TURIN)
    r = parse_report(turin_v2)
    assert r.product is Product.TURIN and r.product_source == "chip_id"
    assert r.reported_tcb.fmc == 0 and r.hwid == fakes.TURIN_CHIP[:8]


def test_cpuid_disagreeing_with_the_requested_product_is_product_mismatch() -> None:
    with pytest.raises(AttestationError) as err:
        parse_report(MILAN_V3, product=Product.TURIN)
    assert err.value.code == "attestation.product_mismatch"


def test_unknown_cpuid_warns_and_falls_back() -> None:
    raw = _set(MILAN_V3, 0x188, bytes([0x19, 0x30]))
    r = parse_report(raw)
    assert r.product is None and r.product_candidates == (Product.MILAN, Product.GENOA) and r.warnings
    assert parse_report(raw, product=Product.GENOA).product is Product.GENOA


def test_signing_key_and_key_info() -> None:
    r = parse_report(fakes.make_report(None, signing_key=1, author_key_en=True))
    assert r.signer is SigningKey.VLEK and r.author_key_en and not r.mask_chip_key


def test_fuzz_mutated_buffers_never_raise_anything_but_attestation_errors() -> None:
    """Thousands of mutated reports: parse (sometimes verify) succeeds or raises an AttestationError."""
    rng = random.Random(20240601)
    bases = [report_bytes(v) for v in ("oak_milan_oc_release_v3", "oak_genoa_v5", "oak_turin_v5")]
    bases += [report_bytes("go-sev-guest_milan_v2"), MILAN_V3, TURIN_V5]
    vid = "oak_genoa_v5"
    certs, opts = certs_for(vid), options_at(vid)
    outcomes = {"ok": 0, "error": 0}
    for i in range(3000):
        buf = bytearray(rng.choice(bases))
        op = rng.randrange(6)
        if op == 0:
            for _ in range(rng.randint(1, 8)):
                buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf = buf[: rng.randrange(len(buf))]
        elif op == 2:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 3:
            buf = bytearray(rng.randbytes(rng.choice([REPORT_SIZE, rng.randrange(2 * REPORT_SIZE)])))
        elif op == 4:
            buf[0:4] = _u32(rng.choice([2, 3, 4, 5, rng.randrange(2**32)]))
            buf[0x188:0x18B] = rng.randbytes(3)
        else:
            start = rng.randrange(0x2A0)
            buf[start : start + 8] = rng.randbytes(8)
        try:
            parse_report(bytes(buf))
            if i % 25 == 0:
                verify_report(bytes(buf), certs, opts)
            outcomes["ok"] += 1
        except AttestationError as exc:
            assert exc.code.startswith("attestation."), exc
            outcomes["error"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 1000, outcomes
