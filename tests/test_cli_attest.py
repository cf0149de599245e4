"""`cube attest show|verify` on the shared SEV-SNP vectors (testvectors/snp, see its SOURCES.md)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.cli import main
from tests.attestation.vectors import REPORTS, SIGNED, SNP

REPORT_KEYS = [
    "version",
    "guest_svn",
    "policy",
    "vmpl",
    "signature_algo",
    "platform_info",
    "signing_key",
    "author_key_en",
    "mask_chip_key",
    "cpuid_fam",
    "cpuid_mod",
    "cpuid_step",
    "current_fw",
    "committed_fw",
    "launch_mit_vector",
    "current_mit_vector",
    "measurement",
    "report_data",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "chip_id",
    "family_id",
    "image_id",
    "current_tcb",
    "reported_tcb",
    "committed_tcb",
    "launch_tcb",
    "debug",
    "migrate_ma",
    "smt_allowed",
    "single_socket",
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["attest", *args])
    return code, capsys.readouterr().out


def at(vid: str) -> str:
    return (datetime.fromisoformat(REPORTS[vid]["cert_not_before"]) + timedelta(days=1)).isoformat()


def verify_args(vid: str, *extra: str) -> list[str]:
    vector = REPORTS[vid]
    return [
        "verify",
        str(SNP / vector["report_file"]),
        "--vcek",
        str(SNP / vector["cert_file"]),
        "--at",
        at(vid),
        "--offline",
        *extra,
    ]


@pytest.mark.parametrize("vid", sorted(REPORTS))
def test_show_prints_the_fields_named_as_in_expected_json(capsys, vid: str) -> None:
    code, out = run(capsys, "show", str(SNP / REPORTS[vid]["report_file"]), "--json")
    assert code == 0
    shown = json.loads(out)
    expected = REPORTS[vid]
    for key in REPORT_KEYS:
        if key in expected:
            assert shown[key] == expected[key], key
    if "cpuid_fam" in expected:  # the product is in the report's bytes only from version 3 on
        assert shown["product"] == expected["product"]
    else:
        assert expected.get("product") is None or expected["product"] in shown["product_candidates"]


def test_show_as_text(capsys) -> None:
    code, out = run(capsys, "show", str(SNP / REPORTS["oak_turin_v5"]["report_file"]))
    assert code == 0
    assert "measurement          f924dd18" in out
    assert "reported_tcb         fmc=0 bl=1 tee=0 snp=2 ucode=71 raw=0x4700000002000100" in out


@pytest.mark.parametrize("vid", sorted(SIGNED))
def test_verify_without_policy_checks_authenticity_and_says_so(capsys, vid: str) -> None:
    code, out = run(capsys, *verify_args(vid))
    assert code == 0, out
    assert out.startswith("VALID: signed by AMD")
    assert "NO POLICY WAS APPLIED" in out


def test_verify_json_names_the_chain_and_the_missing_policy(capsys) -> None:
    code, out = run(capsys, *verify_args("trustee_milan_vlek_v3", "--json"))
    assert code == 0
    result = json.loads(out)
    assert result["valid"] is True
    assert result["policy_applied"] is False and "NO POLICY WAS APPLIED" in result["notice"]
    assert (result["product"], result["signer"], result["root"]) == ("Milan", "SEV-VLEK", "amd")


def test_a_tampered_report_is_invalid(capsys, tmp_path: Path) -> None:
    vid = "oak_genoa_v5"
    report = bytearray((SNP / REPORTS[vid]["report_file"]).read_bytes())
    report[0x90] ^= 1
    tampered = tmp_path / "tampered.bin"
    tampered.write_bytes(bytes(report))
    args = verify_args(vid, "--json")
    args[1] = str(tampered)
    code, out = run(capsys, *args)
    assert code == 1
    assert json.loads(out)["code"] == "attestation.bad_signature"


def test_an_expired_certificate_is_invalid_at_a_later_time(capsys) -> None:
    args = verify_args("trustee_milan_vlek_v3", "--json")
    args[args.index("--at") + 1] = "2030-01-01T00:00:00+00:00"
    code, out = run(capsys, *args)
    assert code == 1
    assert json.loads(out)["code"] == "attestation.cert_expired"


def test_without_a_vcek_offline_the_chain_cannot_be_built(capsys) -> None:
    code, out = run(capsys, "verify", str(SNP / REPORTS["cocos_v2_no_vcek"]["report_file"]), "--offline")
    assert code == 1
    assert "attestation.vcek_unavailable" in out
    assert "NO POLICY WAS APPLIED" in out


def write_policy(tmp_path: Path, **fields: Any) -> str:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"version": 1, **fields}))
    return str(path)


def test_verify_with_a_policy(capsys, tmp_path: Path) -> None:
    vid = "oak_turin_v5"
    measurement = REPORTS[vid]["measurement"]
    code, out = run(capsys, *verify_args(vid, "--policy", write_policy(tmp_path, measurements=[measurement])))
    assert code == 0, out
    assert "policy: applied" in out and "NO POLICY" not in out
    code, out = run(
        capsys, *verify_args(vid, "--json", "--policy", write_policy(tmp_path, measurements=["00" * 48]))
    )
    assert code == 1
    assert json.loads(out)["code"] == "attestation.measurement_mismatch"


def test_a_debug_report_fails_the_default_policy(capsys, tmp_path: Path) -> None:
    vid = "go-sev-guest_milan_v2"
    policy = write_policy(tmp_path, allow_any_measurement=True)
    code, out = run(capsys, *verify_args(vid, "--json", "--policy", policy))
    assert code == 1
    assert json.loads(out)["code"] == "attestation.debug_enabled"


def test_bad_input_is_a_usage_error(capsys, tmp_path: Path) -> None:
    assert main(["attest", "show", str(tmp_path / "missing.bin")]) == 2
    assert main(["attest", *verify_args("oak_turin_v5", "--at", "yesterday")]) == 2
    bad_policy = tmp_path / "bad.json"
    bad_policy.write_text('{"version": 1, "measurements": "no"}')
    assert main(["attest", *verify_args("oak_turin_v5", "--policy", str(bad_policy))]) == 2
    short = tmp_path / "short.bin"
    short.write_bytes(b"\x02" * 100)
    capsys.readouterr()
    assert main(["attest", "show", str(short)]) == 1
    assert "attestation.report_malformed" in capsys.readouterr().err


def test_the_agents_json_document_is_detected(capsys, tmp_path: Path) -> None:
    vid = "oak_milan_oc_release_v3"
    document = {
        "version": 1,
        "provider": "sev-guest",
        "simulated": False,
        "report": base64.b64encode((SNP / REPORTS[vid]["report_file"]).read_bytes()).decode(),
        "certificates": None,
        "binding": {"label": "cube-attest-v1", "nonce": "11" * 32, "spki_sha256": "22" * 32},
        "product": "Milan",
    }
    path = tmp_path / "document.json"
    path.write_text(json.dumps(document))
    code, out = run(capsys, "show", str(path), "--json")
    assert code == 0
    assert json.loads(out)["measurement"] == REPORTS[vid]["measurement"]
    args = verify_args(vid)
    args[1] = str(path)
    code, out = run(capsys, *args)
    assert code == 0, out


@pytest.mark.parametrize("vid", sorted(SIGNED))
def test_product_names_with_a_stepping_verify_the_same(capsys, vid: str) -> None:
    """`--product Milan-B0` (the VCEK's productName, go-sev-guest's spelling) is `--product Milan`."""
    line = REPORTS[vid]["product"]
    plain = run(capsys, *verify_args(vid, "--json", "--product", line))
    stepped = run(capsys, *verify_args(vid, "--json", "--product", f"{line}-B0"))
    named = REPORTS[vid]["cert_productName"]
    as_named = run(capsys, *verify_args(vid, "--json", "--product", named.lower()))
    assert plain[0] == stepped[0] == as_named[0] == 0
    assert json.loads(plain[1])["product"] == json.loads(stepped[1])["product"] == line
    assert json.loads(as_named[1])["product"] == line


def test_an_unknown_product_name_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["attest", *verify_args("oak_turin_v5", "--product", "Bergamo-X")])
    assert exited.value.code == 2
    assert "wanted Milan, Genoa or Turin" in capsys.readouterr().err


def test_host_data_is_recomputed_from_the_deployment_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client recomputes HOST_DATA from the operator's settings file: the canonical JSON's SHA-256."""
    import hashlib

    settings = tmp_path / "settings.json"
    settings.write_text(
        '{\n  "log_level": "info", "domain": "d-1",\n'
        '  "auth_endpoint": "https://auth.example.com",\n  "version": 1\n}'
    )
    canonical = b'{"auth_endpoint":"https://auth.example.com","domain":"d-1","log_level":"info","version":1}'
    assert main(["attest", "host-data", str(settings)]) == 0
    assert capsys.readouterr().out.strip() == hashlib.sha256(canonical).hexdigest()
    bad = {"version": 1, "auth_endpoint": "ftp://x", "domain": "d", "log_level": "info"}
    settings.write_text(json.dumps(bad))
    assert main(["attest", "host-data", str(settings)]) != 0
    assert "auth_endpoint" in capsys.readouterr().err
