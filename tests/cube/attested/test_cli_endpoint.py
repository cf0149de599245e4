"""`cube attest endpoint` and `cube complete` against the attested server: verdicts, failing closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trustme

from cube_lsp.attestation import expected_report_data
from cube_lsp.cli import main
from cube_stack.agent import SIMULATED_MEASUREMENT, SimulatedProvider
from cube_wire.document import attestation_document
from tests.cube.attested._server import COMPLETION, DOMAIN, TOKEN, AttestedServer

SECRET = "def top_secret_cli_7c1d(y):"


def endpoint_args(server: AttestedServer, policy: Path, ca_bundle: Path, *extra: str) -> list[str]:
    return [
        "attest",
        "endpoint",
        server.url,
        "--domain",
        DOMAIN,
        "--policy",
        str(policy),
        "--ca-bundle",
        str(ca_bundle),
        *extra,
    ]  # no --token: attesting needs none, and cube-lsp sends none before the server is attested


def test_endpoint_prints_a_simulated_verdict(
    capsys, server, policy_file, ca: tuple[trustme.CA, Path]
) -> None:
    assert main(endpoint_args(server, policy_file, ca[1])) == 0
    out = capsys.readouterr().out
    assert out.startswith("SIMULATED (dev mode, NOT a confidential VM):")
    assert SIMULATED_MEASUREMENT.hex() in out
    assert main(endpoint_args(server, policy_file, ca[1], "--json")) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "simulated"
    assert shown["product"] == "Milan"
    assert shown["spki_sha256"] is not None
    assert server.calls.attestations == 2


def test_endpoint_failure_exits_non_zero_with_the_code(
    capsys,
    server,
    provider: SimulatedProvider,
    policy_file: Path,
    tmp_path: Path,
    ca: tuple[trustme.CA, Path],
) -> None:
    policy = tmp_path / "strict.json"
    policy.write_text(json.dumps(provider.client_policy() | {"measurements": ["00" * 48]}))
    assert main(endpoint_args(server, policy, ca[1], "--json")) == 1
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["code"]) == ("failed", "attestation.measurement_mismatch")
    server.attestation_needs_token = True  # upstream Cube's attestation route: we never send it one
    assert main(endpoint_args(server, policy_file, ca[1], "--json")) == 1
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["code"]) == ("failed", "attestation.token_required")
    assert server.calls.attestation_authorizations == [None, None]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "secret.py"
    path.write_text(SECRET + "\n    return \n")
    return path


def complete_args(server: AttestedServer, source: Path, policy: Path, ca_bundle: Path) -> list[str]:
    settings = source.with_name("settings.json")
    settings.write_text(json.dumps({"tls": {"caBundle": str(ca_bundle)}}))
    return [
        "complete",
        f"{source}:2:12",
        "--settings",
        str(settings),
        "--endpoint",
        server.url,
        "--domain",
        DOMAIN,
        "--token",
        TOKEN,
        "--attestation",
        "simulated",
        "--policy",
        str(policy),
    ]


def test_complete_attests_and_says_simulated(capsys, server, source, policy_file, ca) -> None:
    assert main(complete_args(server, source, policy_file, ca[1])) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("".join(COMPLETION))
    assert "SIMULATED" in captured.err
    assert server.calls.attestations == 1


def test_complete_fails_closed(capsys, server, source, provider, tmp_path, ca) -> None:
    policy = tmp_path / "strict.json"
    policy.write_text(json.dumps(provider.client_policy() | {"measurements": ["00" * 48]}))
    assert main(complete_args(server, source, policy, ca[1])) == 3
    assert "attestation.measurement_mismatch" in capsys.readouterr().err
    assert server.calls.generate_bodies == []


def test_verify_a_simulated_document_under_its_policy(
    capsys, provider: SimulatedProvider, policy_file: Path, tmp_path: Path
) -> None:
    nonce, spki = bytes(range(32)), b"the proxy's spki"
    report = provider.build_report(expected_report_data(nonce, spki))
    document = tmp_path / "document.json"
    document.write_text(
        json.dumps(
            attestation_document(
                provider.name, provider.simulated, report, provider.certificate_table(), nonce, spki
            )
        )
    )
    assert main(["attest", "verify", str(document), "--policy", str(policy_file), "--offline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("VALID: signed by a SIMULATED root (dev mode, NOT AMD)")
    assert "policy: applied" in out
    assert main(["attest", "show", str(document)]) == 0
    assert capsys.readouterr().out.startswith("SIMULATED")
    # Without the policy naming its root, a simulated report is not authentic.
    assert main(["attest", "verify", str(document), "--offline", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "attestation.root_untrusted"
