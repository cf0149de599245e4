"""The SIMULATED provider: its reports pass the client's verifier and policy only when the policy names it."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID
from cube_agent_testkit import MakeProvider, verify_evidence

from cube_lsp.attestation import (
    AttestationError,
    Product,
    TrustedRoot,
    VerifyOptions,
    amd_root_fingerprints,
    cert_hwid,
    cert_tcb,
    check_binding,
    check_policy,
    expected_report_data,
    load_policy,
    parse_cert_table,
    parse_report,
    verify_report,
)
from cube_stack.agent import (
    SIMULATED_MEASUREMENT,
    AgentSettingsError,
    EvidenceError,
    SimulatedOptions,
    SimulatedProvider,
    SimulatedStateError,
    SimulatedTcb,
)
from cube_stack.agent.simulated import state_path

NONCE = bytes(range(1, 33))
SPKI = b"0Y0\x13\x06\x07*\x86H\xce=\x02\x01 test spki"


def policy_for(provider: SimulatedProvider, **overrides: Any) -> dict[str, Any]:
    """A client policy that names this simulated root and the simulated measurement, defaults otherwise."""
    return {
        "version": 1,
        "measurements": [SIMULATED_MEASUREMENT.hex()],
        "root_of_trust": {"simulated": provider.ark_fingerprint()},
        **overrides,
    }


def attest(
    provider: SimulatedProvider, nonce: bytes = NONCE, spki: bytes = SPKI
) -> tuple[bytes, bytes | None]:
    evidence = provider.get_report(expected_report_data(nonce, spki))
    return evidence.report, evidence.certificates


def test_the_documented_measurement_is_sha384_of_the_label() -> None:
    assert hashlib.sha384(b"cube-simulated-measurement").digest() == SIMULATED_MEASUREMENT
    assert SimulatedOptions().measurement == SIMULATED_MEASUREMENT


@pytest.mark.parametrize(
    ("product", "version"),
    [(Product.MILAN, 3), (Product.MILAN, 5), (Product.GENOA, 3), (Product.GENOA, 5), (Product.TURIN, 5)],
    ids=["milan-v3", "milan-v5", "genoa-v3", "genoa-v5", "turin-v5"],
)
@pytest.mark.parametrize("trust_amd", [False, True], ids=["sim-only", "amd-and-sim"])
def test_reports_verify_pass_the_naming_policy_and_bind(
    make_simulated: MakeProvider, product: Product, version: int, trust_amd: bool
) -> None:
    provider = make_simulated(product=product, version=version)
    report, certs = attest(provider)
    verified = verify_evidence(report, certs, provider, trust_amd=trust_amd)
    assert verified.product is product and verified.simulated
    assert verified.root == f"simulated:{provider.ark_fingerprint()}"
    assert verified.report.version == version and not verified.report.warnings
    check_policy(verified, load_policy(policy_for(provider)))
    check_policy(verified, load_policy(provider.client_policy()))
    check_binding(verified, NONCE, SPKI)


def test_a_root_named_by_fingerprint_only_is_taken_from_the_report(make_simulated: MakeProvider) -> None:
    provider = make_simulated()
    report, certs = attest(provider)
    assert certs is not None
    options = VerifyOptions(extra_roots=(TrustedRoot.from_fingerprint(provider.ark_fingerprint()),))
    verified = verify_report(report, parse_cert_table(certs), options)
    check_policy(verified, load_policy(policy_for(provider)))


def test_the_simulated_root_is_not_amds(make_simulated: MakeProvider) -> None:
    provider = make_simulated()
    assert provider.ark_fingerprint() not in amd_root_fingerprints().values()
    report, certs = attest(provider)
    with pytest.raises(AttestationError) as caught:
        verify_report(report, parse_cert_table(certs or b""), VerifyOptions())  # AMD's roots only
    assert caught.value.code == "attestation.root_untrusted"


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        ({"version": 1, "measurements": [SIMULATED_MEASUREMENT.hex()]}, "attestation.root_not_allowed"),
        ({"measurements": ["ab" * 48]}, "attestation.measurement_mismatch"),
        ({"measurements": []}, "attestation.measurement_mismatch"),
        ({"root_of_trust": {"simulated": "00" * 32}}, "attestation.root_not_allowed"),
        ({"vmpls": [2]}, "attestation.vmpl_not_allowed"),
        ({"host_data": ["11" * 32]}, "attestation.host_data_mismatch"),
    ],
    ids=["default-root-amd", "other-measurement", "no-measurement", "other-root", "vmpl", "host-data"],
)
def test_policies_that_do_not_name_it_fail(
    make_simulated: MakeProvider, policy: dict[str, Any], code: str
) -> None:
    provider = make_simulated()
    report, certs = attest(provider)
    verified = verify_evidence(report, certs, provider)
    document = policy if "version" in policy else policy_for(provider, **policy)
    with pytest.raises(AttestationError) as caught:
        check_policy(verified, load_policy(document))
    assert caught.value.code == code


def test_the_debug_option_is_caught_by_the_default_policy(make_simulated: MakeProvider) -> None:
    provider = make_simulated(debug=True)
    report, certs = attest(provider)
    verified = verify_evidence(report, certs, provider)
    assert verified.report.policy.debug
    with pytest.raises(AttestationError) as caught:
        check_policy(verified, load_policy(policy_for(provider)))
    assert caught.value.code == "attestation.debug_enabled"
    check_policy(verified, load_policy(policy_for(provider, guest_policy={"debug": "allowed"})))


def test_binding_matches_only_the_right_nonce_and_spki(make_simulated: MakeProvider) -> None:
    provider = make_simulated()
    report, certs = attest(provider)
    verified = verify_evidence(report, certs, provider)
    check_binding(verified, NONCE, SPKI)
    for nonce, spki in ((bytes(range(2, 34)), SPKI), (NONCE, SPKI + b"x"), (bytes(range(2, 34)), b"other")):
        with pytest.raises(AttestationError) as caught:
            check_binding(verified, nonce, spki)
        assert caught.value.code == "attestation.binding_mismatch"


def test_configured_fields_land_in_the_report_and_the_vcek(make_simulated: MakeProvider) -> None:
    measurement = hashlib.sha384(b"another image").digest()
    tcb = SimulatedTcb(bootloader=9, tee=1, snp=22, microcode=213)
    provider = make_simulated(
        product=Product.GENOA, measurement=measurement, host_data=b"\x07" * 32, vmpl=2, tcb=tcb, guest_svn=3
    )
    report, certs = attest(provider)
    parsed = parse_report(report)
    assert parsed.product is Product.GENOA and parsed.product_source == "cpuid"
    assert (parsed.measurement, parsed.host_data, parsed.vmpl, parsed.guest_svn) == (
        measurement,
        b"\x07" * 32,
        2,
        3,
    )
    for kind in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        found = getattr(parsed, kind)
        assert (found.bootloader, found.tee, found.snp, found.microcode) == (9, 1, 22, 213), kind
    assert parsed.policy.raw == 0x30000 and not parsed.policy.debug
    assert parsed.current_firmware == parsed.committed_firmware
    assert str(parsed.current_firmware) == "1.55.21"
    assert parsed.report_id_ma == b"\xff" * 32 and any(parsed.report_id)
    assert parsed.signer is not None and parsed.signer.name == "VCEK" and not parsed.mask_chip_key
    vcek = provider.vcek_cert
    assert cert_tcb(vcek) == {"bootloader": 9, "tee": 1, "snp": 22, "microcode": 213}
    assert cert_hwid(vcek) == parsed.chip_id
    verified = verify_evidence(report, certs, provider)
    check_policy(
        verified,
        load_policy(policy_for(provider, measurements=[measurement.hex()], vmpls=[2], host_data=["07" * 32])),
    )


def test_turin_uses_an_eight_byte_chip_id_and_an_fmc_spl(make_simulated: MakeProvider) -> None:
    provider = make_simulated(product=Product.TURIN, version=5, tcb=SimulatedTcb(fmc=2, bootloader=1, snp=3))
    report, certs = attest(provider)
    parsed = parse_report(report)
    assert parsed.product is Product.TURIN and parsed.reported_tcb.fmc == 2
    assert any(parsed.chip_id[:8]) and not any(parsed.chip_id[8:])
    assert cert_hwid(provider.vcek_cert) == parsed.chip_id[:8]
    assert cert_tcb(provider.vcek_cert)["fmc"] == 2
    verify_evidence(report, certs, provider)


def test_a_flipped_bit_breaks_the_signature(make_simulated: MakeProvider) -> None:
    provider = make_simulated()
    report, certs = attest(provider)
    tampered = bytearray(report)
    tampered[0x90] ^= 1  # MEASUREMENT
    with pytest.raises(AttestationError) as caught:
        verify_evidence(bytes(tampered), certs, provider)
    assert caught.value.code == "attestation.bad_signature"


def test_the_chain_says_simulated_where_the_contract_allows(make_simulated: MakeProvider) -> None:
    provider = make_simulated()
    table = parse_cert_table(provider.certificate_table())
    assert table.vcek is not None and table.ask is not None and table.ark is not None
    root = provider.root
    ark_cn = root.ark_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    ask_cn = root.ask_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    vcek_cn = provider.vcek_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert (ark_cn, ask_cn, vcek_cn) == ("SIMULATED ARK-Milan", "SEV-Milan", "SEV-VCEK")
    for cert in (root.ark_cert, root.ask_cert, provider.vcek_cert):
        ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value
        assert "SIMULATED" in str(ou)
        assert cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"  # RSASSA-PSS


def test_construction_logs_simulated_loudly(
    make_simulated: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="cube_stack.agent")
    provider = make_simulated()
    attest(provider)
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "SIMULATED" in r.getMessage()]
    assert warnings and provider.ark_fingerprint() in warnings[0].getMessage()
    assert any("SIMULATED" in r.getMessage() for r in caplog.records if r.levelname == "DEBUG")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"version": 2}, "version"),
        ({"version": 4}, "version"),
        ({"product": "Naples"}, "product"),
        ({"measurement": b"short"}, "measurement"),
        ({"host_data": bytes(31)}, "host_data"),
        ({"vmpl": 4}, "vmpl"),
        ({"tcb": SimulatedTcb(microcode=256)}, "tcb"),
        ({"firmware": (1, 2, -1)}, "firmware"),
        ({"rsa_bits": 1024}, "rsa_bits"),
    ],
)
def test_options_are_validated(options: dict[str, Any], field: str) -> None:
    with pytest.raises(AgentSettingsError) as caught:
        SimulatedOptions(**options)
    assert caught.value.code == "agent.settings_invalid" and caught.value.field == field


def test_product_names_are_accepted_as_strings() -> None:
    assert SimulatedOptions(product="Genoa").product is Product.GENOA  # type: ignore[arg-type]


def test_report_data_must_be_64_bytes(make_simulated: MakeProvider) -> None:
    with pytest.raises(EvidenceError) as caught:
        make_simulated().get_report(b"x" * 63)
    assert caught.value.code == "agent.report_malformed"


# --------------------------------------------------------------------------------------------- persistence


def test_a_persisted_root_keeps_its_fingerprint_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    options = SimulatedOptions(data_dir=data_dir, rsa_bits=2048)
    first = SimulatedProvider(options)
    path = state_path(data_dir, Product.MILAN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert sorted(p.name for p in data_dir.iterdir()) == [path.name]  # no temporary file left behind
    second = SimulatedProvider(options)  # a restart: same root, a fresh VCEK
    assert second.ark_fingerprint() == first.ark_fingerprint()
    assert second.root.chip_id == first.root.chip_id
    assert second.vcek_cert != first.vcek_cert
    report, certs = attest(second)
    check_policy(verify_evidence(report, certs, first), load_policy(policy_for(first)))
    saved = json.loads(path.read_text())
    assert saved["product"] == "Milan" and "SIMULATED" in saved["warning"]
    other = SimulatedProvider(SimulatedOptions(data_dir=data_dir, rsa_bits=2048, product=Product.GENOA))
    assert other.ark_fingerprint() != first.ark_fingerprint()  # one root per product line


def test_memory_only_roots_differ_per_start() -> None:
    one = SimulatedProvider(SimulatedOptions(rsa_bits=2048))
    two = SimulatedProvider(SimulatedOptions(rsa_bits=2048))
    assert one.ark_fingerprint() != two.ark_fingerprint()


def test_a_persisted_root_readable_by_others_is_refused(tmp_path: Path) -> None:
    options = SimulatedOptions(data_dir=tmp_path, rsa_bits=2048)
    SimulatedProvider(options)
    os.chmod(state_path(tmp_path, Product.MILAN), 0o644)
    with pytest.raises(SimulatedStateError) as caught:
        SimulatedProvider(options)
    assert caught.value.code == "agent.simulated_state_insecure"


@pytest.mark.parametrize(
    "damage",
    ["not json", "wrong-format", "swapped-keys", "wrong-product"],
)
def test_a_damaged_persisted_root_is_an_error_not_a_silent_new_root(tmp_path: Path, damage: str) -> None:
    options = SimulatedOptions(data_dir=tmp_path, rsa_bits=2048)
    SimulatedProvider(options)
    path = state_path(tmp_path, Product.MILAN)
    doc = json.loads(path.read_text())
    if damage == "not json":
        text = "{"
    else:
        if damage == "wrong-format":
            doc["format"] = "something-else"
        elif damage == "swapped-keys":
            doc["ark_key"], doc["ask_key"] = doc["ask_key"], doc["ark_key"]
        else:
            doc["product"] = "Genoa"
        text = json.dumps(doc)
    path.write_text(text)
    with pytest.raises(SimulatedStateError) as caught:
        SimulatedProvider(options)
    assert caught.value.code == "agent.simulated_state_invalid"
    assert path.read_text() == text  # left alone for the operator


def test_a_root_for_another_product_is_refused(make_simulated: MakeProvider) -> None:
    genoa_root = make_simulated(product=Product.GENOA).root
    with pytest.raises(AgentSettingsError) as caught:
        SimulatedProvider(SimulatedOptions(rsa_bits=2048), root=genoa_root)
    assert caught.value.field == "root"
