"""`cube-stack policy`: policies written from a measurement or a report load and decide correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cube_lsp.attestation import (
    TrustedRoot,
    VerifyOptions,
    check_policy,
    load_policy,
    parse_cert_table,
    parse_report,
    verify_report,
)
from cube_stack.agent import SimulatedOptions, SimulatedProvider
from cube_stack.cli import main as cube_stack_main
from cube_stack.policy_writer import policy_from_measurement, policy_from_report
from cube_wire.attestation_errors import PolicyInvalidError
from cube_wire.errors import CubeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "testvectors" / "snp"


@pytest.fixture(scope="module")
def provider() -> SimulatedProvider:
    return SimulatedProvider(SimulatedOptions(rsa_bits=2048))


def verified(provider: SimulatedProvider):
    evidence = provider.get_report(bytes(64))
    report = parse_report(evidence.report)
    options = VerifyOptions(trust_amd=False, extra_roots=(TrustedRoot.from_pem(provider.ark_pem()),))
    return report, verify_report(report, parse_cert_table(evidence.certificates), options)


def test_policy_from_a_report_accepts_that_cvm_and_no_other_measurement(provider: SimulatedProvider):
    report, good = verified(provider)
    policy = policy_from_report(report, simulated_root=provider.ark_fingerprint())
    check_policy(good, load_policy(policy))  # accepted
    other = policy_from_measurement("ab" * 48, simulated_root=provider.ark_fingerprint())
    with pytest.raises(CubeError) as caught:
        check_policy(good, load_policy(other))
    assert caught.value.code == "attestation.measurement_mismatch"
    amd_only = policy_from_report(report)  # no simulated root named: AMD only
    with pytest.raises(CubeError) as caught:
        check_policy(good, load_policy(amd_only))
    assert caught.value.code == "attestation.root_not_allowed"


def test_debug_stays_forbidden_unless_asked(provider: SimulatedProvider):
    report, _ = verified(provider)
    assert "guest_policy" not in policy_from_report(report)
    assert policy_from_report(report, allow_debug=True)["guest_policy"] == {"debug": "allowed"}


@pytest.mark.parametrize(
    ("measurement", "products", "code"),
    [
        ("ab" * 47, ("Milan",), "policy.measurement_invalid"),
        ("zz" * 48, ("Milan",), "policy.measurement_invalid"),
        ("ab" * 48, ("Venice",), "policy.product_invalid"),
    ],
)
def test_bad_inputs_are_named(measurement: str, products: tuple[str, ...], code: str):
    with pytest.raises(CubeError) as caught:
        policy_from_measurement(measurement, products=products)
    assert caught.value.code == code


def test_cli_writes_a_policy_from_a_real_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    output = tmp_path / "policy.json"
    report = SHARED / "go-sev-guest" / "attestation.bin"
    assert (
        cube_stack_main(["policy", "from-report", str(report), "--product", "Milan", "-o", str(output)]) == 0
    )
    policy = json.loads(output.read_text())
    assert policy["products"] == ["Milan"] and policy["root_of_trust"] == "amd"
    assert policy["measurements"] == [parse_report(report.read_bytes(), product=None).measurement.hex()]
    load_policy(policy)
    assert cube_stack_main(["policy", "from-report", str(report)]) == 1  # a v2 report needs --product
    assert "policy.product_unknown" in capsys.readouterr().err


def test_products_take_amds_spellings(tmp_path: Path) -> None:
    """The CLI and policy files accept Milan-B0, Genoa-B1 (VCEK productName, go-sev-guest) as Milan, Genoa."""
    output = tmp_path / "policy.json"
    measurement = "ab" * 48
    args = ["policy", "from-measurement", measurement, "--product", "Milan-B0", "--product", "genoa-b1"]
    assert cube_stack_main([*args, "-o", str(output)]) == 0
    assert json.loads(output.read_text())["products"] == ["Milan", "Genoa"]
    policy = load_policy({"version": 1, "measurements": [measurement], "products": ["Turin-C1", "Milan"]})
    assert [p.value for p in policy.products or ()] == ["Turin", "Milan"]
    with pytest.raises(PolicyInvalidError, match=r"products\[0\]"):
        load_policy({"version": 1, "measurements": [measurement], "products": ["Bergamo"]})
