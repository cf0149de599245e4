"""policy.py: strict loading of the JSON policy, and one case per check on verified reports."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.attestation import (
    AttestationError,
    CertTable,
    Policy,
    Product,
    TrustedRoot,
    VerifyOptions,
    check_policy,
    fingerprint,
    load_policy,
    parse_report,
    verify_report,
)
from tests.attestation import fakes
from tests.attestation.fakes import T0, Tcb
from tests.attestation.vectors import REPORTS, certs_for, options_at, report_bytes

EXAMPLE: dict[str, Any] = {
    "version": 1,
    "measurements": ["11" * 48],
    "host_data": ["00" * 32],
    "require_id_block": False,
    "guest_policy": {
        "debug": "forbidden",
        "migrate_ma": "forbidden",
        "minimum_abi": {"major": 0, "minor": 0},
    },
    "minimum_tcb": {"reported": {"bootloader": 3, "snp": 8, "microcode": 115}},
    "minimum_firmware": {"current": {"major": 1, "minor": 55}},
    "vmpls": [0],
    "products": ["Milan", "Genoa", "Turin"],
}


def _code(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        fn(*args, **kw)
    return err.value.code


def test_load_from_file_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(EXAMPLE))
    assert load_policy(path) == load_policy(EXAMPLE) == load_policy(str(path))
    policy = load_policy(EXAMPLE)
    assert policy.measurements == (b"\x11" * 48,)
    assert policy.guest_policy_bits["debug"] == "forbidden" and policy.root_of_trust == "amd"


def test_defaults_are_safe() -> None:
    policy = load_policy({"version": 1})
    assert policy.measurements == () and not policy.allow_any_measurement
    assert (
        policy.guest_policy_bits["debug"] == "forbidden"
        and policy.guest_policy_bits["migrate_ma"] == "forbidden"
    )
    assert policy.vmpls == (0,) and not policy.permit_provisional_firmware and policy.root_of_trust == "amd"
    assert Policy() == policy


INVALID: dict[str, Any] = {
    "not an object": [],
    "missing version": {"measurements": []},
    "version 2": {"version": 2},
    "version true": {"version": True},
    "unknown key": {"version": 1, "measurement": ["11" * 48]},
    "short measurement": {"version": 1, "measurements": ["11" * 47]},
    "non-hex measurement": {"version": 1, "measurements": ["zz" * 48]},
    "measurements not a list": {"version": 1, "measurements": "11" * 48},
    "measurements null": {"version": 1, "measurements": None},
    "host_data length": {"version": 1, "host_data": ["00" * 31]},
    "chip id length": {"version": 1, "chip_ids": ["00" * 32]},
    "family id length": {"version": 1, "family_id": "00" * 15},
    "allow_any as string": {"version": 1, "allow_any_measurement": "yes"},
    "bad bit rule": {"version": 1, "guest_policy": {"debug": "sometimes"}},
    "unknown guest bit": {"version": 1, "guest_policy": {"debugging": "allowed"}},
    "abi out of range": {"version": 1, "guest_policy": {"minimum_abi": {"major": 256}}},
    "unknown platform bit": {"version": 1, "platform_info": {"smt": "allowed"}},
    "unknown tcb kind": {"version": 1, "minimum_tcb": {"future": {}}},
    "unknown tcb component": {"version": 1, "minimum_tcb": {"current": {"ucode": 1}}},
    "negative tcb": {"version": 1, "minimum_tcb": {"current": {"snp": -1}}},
    "tcb as float": {"version": 1, "minimum_tcb": {"current": {"snp": 1.5}}},
    "firmware key": {"version": 1, "minimum_firmware": {"current": {"patch": 1}}},
    "vmpl 4": {"version": 1, "vmpls": [4]},
    "empty vmpls": {"version": 1, "vmpls": []},
    "unknown product": {"version": 1, "products": ["Venice"]},
    "root string": {"version": 1, "root_of_trust": "intel"},
    "root short fingerprint": {"version": 1, "root_of_trust": {"simulated": "ab"}},
    "root extra key": {"version": 1, "root_of_trust": {"simulated": "ab" * 32, "also": 1}},
    "svn too large": {"version": 1, "minimum_guest_svn": 2**32},
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_policies_are_refused(case: str) -> None:
    assert _code(load_policy, INVALID[case]) == "attestation.policy_invalid"


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    assert _code(load_policy, tmp_path / "missing.json") == "attestation.policy_invalid"
    bad = tmp_path / "bad.json"
    bad.write_text("{version: 1")
    assert _code(load_policy, bad) == "attestation.policy_invalid"


def test_check_policy_accepts_only_verified_reports() -> None:
    parsed = parse_report(report_bytes("oak_genoa_v5"))
    with pytest.raises(TypeError):
        check_policy(parsed, Policy())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- real vectors


def _verified(vid: str):  # type: ignore[no-untyped-def]
    return verify_report(report_bytes(vid), certs_for(vid), options_at(vid))


def test_debug_vector_rejected_by_default_and_accepted_when_debug_is_allowed() -> None:
    vid = "go-sev-guest_milan_v2"
    verified = _verified(vid)
    base = {"version": 1, "measurements": [REPORTS[vid]["measurement"]]}
    assert _code(check_policy, verified, load_policy(base)) == "attestation.debug_enabled"
    check_policy(verified, load_policy({**base, "guest_policy": {"debug": "allowed"}}))


def test_default_policy_requires_a_measurement() -> None:
    verified = _verified("oak_genoa_v5")
    assert _code(check_policy, verified, load_policy({"version": 1})) == "attestation.measurement_mismatch"
    check_policy(verified, load_policy({"version": 1, "allow_any_measurement": True}))


@pytest.mark.parametrize("vid", ["trustee_milan_v2", "trustee_milan_vlek_v3", "trustee_azure_milan_v2_hcl"])
def test_provisional_firmware_vectors_need_the_permission(vid: str) -> None:
    verified = _verified(vid)
    base: dict[str, Any] = {"version": 1, "measurements": [REPORTS[vid]["measurement"]], "vmpls": [0, 1]}
    assert _code(check_policy, verified, load_policy(base)) == "attestation.provisional_firmware"
    check_policy(verified, load_policy({**base, "permit_provisional_firmware": True}))


def test_oak_turin_meets_oaks_minimum_tcb() -> None:
    verified = _verified("oak_turin_v5")
    minimum = {"bootloader": 1, "tee": 0, "snp": 2, "microcode": 71, "fmc": 0}
    doc = {"version": 1, "allow_any_measurement": True, "minimum_tcb": {"reported": minimum}}
    check_policy(verified, load_policy(doc))
    doc["minimum_tcb"] = {"reported": {**minimum, "fmc": 1}}
    assert _code(check_policy, verified, load_policy(doc)) == "attestation.tcb_too_low"


# ------------------------------------------------------------------------------------------------ each check


@pytest.fixture(scope="module")
def sim() -> fakes.FakeChain:
    return fakes.make_chain(Product.MILAN, label="policy", amd_names=False)


def _verify_fake(chain: fakes.FakeChain, **report: Any):  # type: ignore[no-untyped-def]
    opts = VerifyOptions(
        now=lambda: T0 + timedelta(days=1), extra_roots=(TrustedRoot.from_pem(chain.pem("ark")),)
    )
    certs = CertTable(vcek=chain.der("leaf"), ask=chain.der("ask"))
    return verify_report(fakes.make_report(chain, **report), certs, opts)


def _sim_policy(chain: fakes.FakeChain, **extra: Any) -> Policy:
    doc = {"version": 1, "measurements": ["11" * 48], "root_of_trust": {"simulated": fingerprint(chain.ark)}}
    return load_policy({**doc, **extra})


CASES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("measurement", {"measurement": b"\x12" * 48}, {}, "measurement_mismatch"),
    ("host data", {}, {"host_data": ["ab" * 32]}, "host_data_mismatch"),
    ("report id", {}, {"report_ids": ["ab" * 32]}, "report_id_not_allowed"),
    ("chip id", {}, {"chip_ids": ["ab" * 64]}, "chip_id_not_allowed"),
    ("family id", {}, {"family_id": "ab" * 16}, "family_id_mismatch"),
    ("image id", {}, {"image_id": "ab" * 16}, "image_id_mismatch"),
    ("id block", {}, {"require_id_block": True}, "id_block_missing"),
    ("id key", {"id_key_digest": b"\x01" * 48}, {"id_key_digests": ["02" * 48]}, "id_key_not_allowed"),
    ("author key missing", {}, {"require_author_key": True}, "author_key_missing"),
    (
        "author key",
        {"author_key_en": True, "author_key_digest": b"\x01" * 48},
        {"author_key_digests": ["02" * 48]},
        "author_key_not_allowed",
    ),
    ("guest svn", {"guest_svn": 1}, {"minimum_guest_svn": 2}, "guest_svn_too_low"),
    ("debug", {"policy": 0x30000 | 1 << 19}, {}, "debug_enabled"),
    ("migrate ma", {"policy": 0x30000 | 1 << 18}, {}, "policy_bit_forbidden"),
    ("smt forbidden", {}, {"guest_policy": {"smt": "forbidden"}}, "policy_bit_forbidden"),
    ("single socket", {}, {"guest_policy": {"single_socket": "required"}}, "policy_bit_required"),
    (
        "abi",
        {"policy": 0x30000 | 0x0105},
        {"guest_policy": {"minimum_abi": {"major": 1, "minor": 6}}},
        "abi_too_low",
    ),
    (
        "platform smt",
        {"platform_info": 1},
        {"platform_info": {"smt_enabled": "forbidden"}},
        "platform_info_forbidden",
    ),
    (
        "platform tsme",
        {"platform_info": 1},
        {"platform_info": {"tsme_enabled": "required"}},
        "platform_info_required",
    ),
    ("vmpl", {"vmpl": 2}, {}, "vmpl_not_allowed"),
    ("product", {}, {"products": ["Turin"]}, "product_not_allowed"),
    ("root", {}, {"root_of_trust": "amd"}, "root_not_allowed"),
    ("reported tcb", {}, {"minimum_tcb": {"reported": {"snp": 9}}}, "tcb_too_low"),
    ("current tcb", {}, {"minimum_tcb": {"current": {"microcode": 116}}}, "tcb_too_low"),
    ("committed tcb", {}, {"minimum_tcb": {"committed": {"bootloader": 4}}}, "tcb_too_low"),
    ("launch tcb", {"launch_tcb": Tcb(3, 0, 7, 115)}, {"minimum_tcb": {"launch": {"snp": 8}}}, "tcb_too_low"),
    (
        "firmware",
        {},
        {"minimum_firmware": {"current": {"major": 1, "minor": 55, "build": 31}}},
        "firmware_too_low",
    ),
    (
        "committed firmware",
        {"committed_fw": (1, 55, 29)},
        {
            "permit_provisional_firmware": True,
            "minimum_firmware": {"committed": {"major": 1, "minor": 55, "build": 30}},
        },
        "firmware_too_low",
    ),
    (
        "provisional tcb",
        {"current_tcb": Tcb(3, 0, 8, 116), "reported_tcb": Tcb(), "committed_tcb": Tcb()},
        {},
        "provisional_firmware",
    ),
    ("provisional firmware", {"committed_fw": (1, 55, 29)}, {}, "provisional_firmware"),
    ("mitigation (v3)", {}, {"required_launch_mit_vector": 1}, "mitigation_missing"),
    (
        "mitigation (v5)",
        {"version": 5, "mit_vectors": (1, 0)},
        {"required_current_mit_vector": 1},
        "mitigation_missing",
    ),
]


@pytest.mark.parametrize(("report", "policy", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_policy_check(
    sim: fakes.FakeChain, report: dict[str, Any], policy: dict[str, Any], code: str
) -> None:
    verified = _verify_fake(sim, **report)
    assert _code(check_policy, verified, _sim_policy(sim, **policy)) == f"attestation.{code}"


def test_a_report_meeting_every_check_passes(sim: fakes.FakeChain) -> None:
    verified = _verify_fake(
        sim,
        version=5,
        mit_vectors=(1, 3),
        id_key_digest=b"\x01" * 48,
        author_key_en=True,
        author_key_digest=b"\x02" * 48,
        guest_svn=3,
        policy=0x30000 | 1 << 20,
    )
    policy = _sim_policy(
        sim,
        host_data=["00" * 32],
        report_ids=["22" * 32],
        chip_ids=[fakes.MILAN_CHIP.hex()],
        family_id="00" * 16,
        image_id="00" * 16,
        require_id_block=True,
        id_key_digests=["01" * 48],
        require_author_key=True,
        author_key_digests=["02" * 48],
        minimum_guest_svn=3,
        guest_policy={
            "single_socket": "required",
            "smt": "required",
            "minimum_abi": {"major": 0, "minor": 0},
        },
        platform_info={"smt_enabled": "required", "tsme_enabled": "forbidden"},
        minimum_tcb={
            k: {"bootloader": 3, "snp": 8, "microcode": 115} for k in ("current", "reported", "committed")
        },
        minimum_firmware={"current": {"major": 1, "minor": 55, "build": 30}},
        products=["Milan"],
        required_launch_mit_vector=1,
        required_current_mit_vector="0x3",
    )
    check_policy(verified, policy)
