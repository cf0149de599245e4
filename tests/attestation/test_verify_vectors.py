"""verify.py against real reports and AMD certificates: every shared vector verifies at its pinned time."""

from __future__ import annotations

import hashlib
import warnings
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.utils import CryptographyDeprecationWarning

from cube_lsp.attestation import (
    AttestationError,
    CertTable,
    Product,
    SigningKey,
    VerifyOptions,
    amd_root,
    amd_root_fingerprints,
    cert_hwid,
    cert_tcb,
    check_report_signature,
    parse_report,
    verify_certificate_chain,
    verify_report,
)
from cube_lsp.attestation.verify import _load_cert
from tests.attestation.vectors import (
    EXPECTED,
    PRODUCT_VECTORS,
    REPORTS,
    SIGNED,
    SNP,
    certs_for,
    leaf_bytes,
    options_at,
    pinned_now,
    report_bytes,
)

TCB_NAMES = {"bl": "bootloader", "tee": "tee", "snp": "snp", "ucode": "microcode", "fmc": "fmc"}


def _code(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        fn(*args, **kw)
    return err.value.code


@pytest.mark.parametrize("vid", sorted(SIGNED))
def test_vector_verifies_at_its_pinned_time(vid: str) -> None:
    want = SIGNED[vid]
    verified = verify_report(report_bytes(vid), certs_for(vid), options_at(vid))
    assert verified.product is Product(want["product"])
    assert verified.root == "amd" and not verified.simulated
    assert verified.root_fingerprint == amd_root_fingerprints()[verified.product]
    assert verified.signer is (SigningKey.VLEK if want["signer"] == "SEV-VLEK" else SigningKey.VCEK)
    names = " <- ".join(
        c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value for c in verified.chain
    )
    assert names == want["chain"]
    assert cert_tcb(verified.chain[0]) == {TCB_NAMES[k]: v for k, v in want["cert_tcb"].items()}
    assert verified.csp_id == want.get("cspID")
    assert verified.report.raw == report_bytes(vid)


@pytest.mark.parametrize("vid", sorted(SIGNED))
def test_tampered_measurement_fails_the_signature(vid: str) -> None:
    raw = bytearray(report_bytes(vid))
    raw[0x90] ^= 1
    assert _code(verify_report, bytes(raw), certs_for(vid), options_at(vid)) == "attestation.bad_signature"


@pytest.mark.parametrize("product", list(PRODUCT_VECTORS))
def test_mutating_any_signed_byte_fails(product: Product) -> None:
    vid = PRODUCT_VECTORS[product]
    raw, certs, opts = report_bytes(vid), certs_for(vid), options_at(vid)
    leaf = _load_cert(leaf_bytes(vid), "VCEK")
    codes: dict[str, int] = {}
    for i in range(0x2A0):
        buf = bytearray(raw)
        buf[i] ^= 1 << (i % 8)
        mutated = bytes(buf)
        code = _code(verify_report, mutated, certs, opts)
        codes[code] = codes.get(code, 0) + 1
        if code != "attestation.bad_signature":  # refused before the signature: check it on its own
            assert _code(check_report_signature, mutated, leaf) == "attestation.bad_signature", hex(i)
    # Bytes that break the format are refused before the signature is looked at; all others fail it.
    assert set(codes) <= {"attestation.bad_signature", "attestation.report_malformed"}, codes
    assert codes["attestation.bad_signature"] > 400, codes


@pytest.mark.parametrize("product", list(PRODUCT_VECTORS))
def test_mutating_the_signature_fails(product: Product) -> None:
    vid = PRODUCT_VECTORS[product]
    for off in (0x2A0, 0x2E7, 0x2E8, 0x32F):
        buf = bytearray(report_bytes(vid))
        buf[off] ^= 0x80
        assert (
            _code(verify_report, bytes(buf), certs_for(vid), options_at(vid)) == "attestation.bad_signature"
        )


def test_vlek_vector_uses_the_vlek_chain_and_expires() -> None:
    vid = "trustee_milan_vlek_v3"
    verified = verify_report(report_bytes(vid), certs_for(vid), options_at(vid))
    assert verified.chain[1].subject.rfc4514_string().startswith("CN=SEV-VLEK-Milan")
    after = VerifyOptions(now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    assert _code(verify_report, report_bytes(vid), certs_for(vid), after) == "attestation.cert_expired"
    before = VerifyOptions(now=lambda: datetime(2024, 12, 1, tzinfo=UTC))
    assert _code(verify_report, report_bytes(vid), certs_for(vid), before) == "attestation.cert_not_yet_valid"


def test_vlek_report_needs_a_vlek_and_a_vcek_report_refuses_one() -> None:
    vid = "trustee_milan_vlek_v3"
    assert (
        _code(verify_report, report_bytes(vid), CertTable(), options_at(vid))
        == "attestation.vcek_unavailable"
    )
    as_vcek = CertTable(vcek=leaf_bytes(vid))
    assert _code(verify_report, report_bytes(vid), as_vcek, options_at(vid)) == "attestation.vcek_unavailable"
    vcek_vid = "oak_milan_oc_release_v3"
    wrong = CertTable(vlek=leaf_bytes(vid))
    assert _code(verify_report, report_bytes(vcek_vid), wrong, options_at(vcek_vid)) == (
        "attestation.signing_key_mismatch"
    )


def test_a_vlek_certificate_in_the_vcek_slot_is_signing_key_mismatch() -> None:
    vid = "oak_milan_oc_release_v3"
    certs = CertTable(vcek=leaf_bytes("trustee_milan_vlek_v3"))
    when = pinned_now("trustee_milan_vlek_v3")
    code = _code(verify_report, report_bytes(vid), certs, VerifyOptions(now=lambda: when))
    assert code == "attestation.signing_key_mismatch"


@pytest.mark.parametrize(
    ("report_product", "cert_product"),
    [(a, b) for a in PRODUCT_VECTORS for b in PRODUCT_VECTORS if a is not b],
)
def test_swapping_products_chains_fails(report_product: Product, cert_product: Product) -> None:
    vid, other = PRODUCT_VECTORS[report_product], PRODUCT_VECTORS[cert_product]
    code = _code(verify_report, report_bytes(vid), CertTable(vcek=leaf_bytes(other)), options_at(vid))
    assert code in {"attestation.product_mismatch", "attestation.chain_invalid"}
    # The right VCEK with another product's ASK or ARK shipped alongside it.
    other_ask = (SNP / "amd" / f"ask_{cert_product.value.lower()}.pem").read_bytes()
    other_ark = amd_root(cert_product).public_bytes(serialization.Encoding.PEM)
    certs = CertTable(vcek=leaf_bytes(vid), ask=other_ask)
    assert _code(verify_report, report_bytes(vid), certs, options_at(vid)) == "attestation.chain_invalid"
    certs = CertTable(vcek=leaf_bytes(vid), ark=other_ark)
    assert _code(verify_report, report_bytes(vid), certs, options_at(vid)) == "attestation.root_untrusted"
    # Asking for another product than the report's CPUID names.
    opts = options_at(vid, product=cert_product)
    assert _code(verify_report, report_bytes(vid), certs_for(vid), opts) == "attestation.product_mismatch"


def test_v2_report_with_a_named_wrong_product_fails() -> None:
    vid = "go-sev-guest_milan_v2"
    opts = options_at(vid, product=Product.GENOA)
    assert _code(verify_report, report_bytes(vid), certs_for(vid), opts) == "attestation.product_mismatch"
    verified = verify_report(report_bytes(vid), certs_for(vid), options_at(vid, product=Product.MILAN))
    assert verified.product is Product.MILAN


def test_host_shipped_amd_chain_is_accepted_when_it_is_the_pinned_one() -> None:
    vid = "oak_turin_v5"
    ask, ark = x509.load_pem_x509_certificates((SNP / "amd" / "ask_ark_turin_vcek.pem").read_bytes())
    der = serialization.Encoding.DER
    certs = CertTable(vcek=leaf_bytes(vid), ask=ask.public_bytes(der), ark=ark.public_bytes(der))
    assert verify_report(report_bytes(vid), certs, options_at(vid)).product is Product.TURIN


def test_amd_roots_can_be_turned_off() -> None:
    vid = "oak_genoa_v5"
    opts = options_at(vid, trust_amd=False)
    assert _code(verify_report, report_bytes(vid), certs_for(vid), opts) == "attestation.chain_invalid"


def test_no_certificate_and_no_getter_is_vcek_unavailable() -> None:
    vid = "oak_genoa_v5"
    assert _code(verify_report, report_bytes(vid), None, options_at(vid)) == "attestation.vcek_unavailable"


def test_chain_only_vectors() -> None:
    chain_only = EXPECTED["chain_only"]
    for name, want in chain_only.items():
        der = (SNP / name).read_bytes()
        cert = _load_cert(der, name)
        exts = want["amd_extensions"]
        assert cert_hwid(cert) == bytes.fromhex(exts["hwID"]).removeprefix(b"\x04\x40")
        spl = {k.removesuffix("SPL"): v for k, v in exts.items() if k.endswith("SPL")}
        assert cert_tcb(cert) == {TCB_NAMES[k]: v for k, v in spl.items() if k in TCB_NAMES}
        product = Product.TURIN if want["productName"] == "Turin" else Product.MILAN
        opts = VerifyOptions(now=lambda: datetime(2026, 1, 1, tzinfo=UTC))
        if want["chain_valid"]:
            chain, label = verify_certificate_chain(der, product, options=opts)
            assert label == "amd" and chain[2] == amd_root(product)
        else:
            assert _code(verify_certificate_chain, der, product, options=opts) == "attestation.chain_invalid"


def test_pinned_roots_match_expected_hashes() -> None:
    fps = amd_root_fingerprints()
    for entry in EXPECTED["amd_ca"].values():
        product = Product(entry["ark_cn"].removeprefix("CN=ARK-"))
        assert fps[product] == entry["ark_sha256_der"]
    for entry in EXPECTED["amd_ca"].values():
        product = Product(entry["ark_cn"].removeprefix("CN=ARK-"))
        role = "asvk" if "VLEK" in entry["ica_cn"] else "ask"
        from cube_lsp.attestation.verify import _pinned

        der = _pinned(product, role).public_bytes(serialization.Encoding.DER)
        assert hashlib.sha256(der).hexdigest() == entry["ica_sha256_der"]


def test_cryptography_still_only_warns_about_serial_number_zero() -> None:
    """AMD's VCEKs have serial 0; if cryptography turns its warning into an error, this test says so first."""
    der = leaf_bytes("oak_turin_v5")
    with pytest.warns(CryptographyDeprecationWarning):
        x509.load_der_x509_certificate(der).serial_number  # noqa: B018 - the access is what warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = _load_cert(der, "VCEK")
    assert cert is not None


def test_report_object_can_be_verified_directly() -> None:
    vid = "oak_milan_rk_staging_v3"
    parsed = parse_report(report_bytes(vid))
    assert verify_report(parsed, certs_for(vid), options_at(vid)).report is parsed
    assert REPORTS[vid]["product"] == "Milan"
