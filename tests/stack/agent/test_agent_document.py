"""The Agent: its JSON document's exact shape, binding, failures, provider selection and the public API."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from cube_agent_testkit import FakeConfigfsTsm, FakeSevGuestDriver, MakeProvider, verify_evidence

import cube_stack.agent as agent_pkg
from cube_lsp.attestation import Product, check_binding, check_policy, load_policy, parse_cert_table
from cube_stack.agent import (
    Agent,
    AgentRequestError,
    AgentSettingsError,
    AttestationProvider,
    ConfigfsTsmProvider,
    Evidence,
    EvidenceError,
    ProviderUnavailableError,
    SevGuestProvider,
    SimulatedOptions,
    SimulatedProvider,
    SpkiMismatchError,
    TlsIdentity,
    new_tls_identity,
    select_provider,
    spki_der,
    spki_sha256,
)
from cube_stack.proxy import AttestationAgent

NONCE = bytes(range(7, 39))


@pytest.fixture(scope="module")
def identity() -> TlsIdentity:
    return new_tls_identity(("127.0.0.1",), days=1)


def decode(document: dict[str, Any]) -> tuple[bytes, bytes | None]:
    certs = document["certificates"]
    return base64.b64decode(document["report"], validate=True), (
        base64.b64decode(certs, validate=True) if certs is not None else None
    )


async def test_the_document_has_exactly_the_documented_shape(
    make_simulated: MakeProvider, identity: TlsIdentity
) -> None:
    provider = make_simulated(product=Product.GENOA)
    agent = Agent(provider, identity.spki_der)
    assert isinstance(agent, AttestationAgent)
    document = await agent.attest(NONCE, identity.spki_der)
    assert json.loads(json.dumps(document)) == document  # plain JSON types only
    assert set(document) == {
        "version",
        "provider",
        "simulated",
        "report",
        "certificates",
        "binding",
        "product",
    }
    assert document["version"] == 1
    assert document["provider"] == "simulated" and document["simulated"] is True
    assert document["product"] == "Genoa"
    assert document["binding"] == {
        "label": "cube-attest-v1",
        "nonce": NONCE.hex(),
        "spki_sha256": hashlib.sha256(identity.spki_der).hexdigest(),
    }
    report, certs = decode(document)
    assert len(report) == 1184 and certs is not None
    table = parse_cert_table(certs)
    assert table.vcek and table.ask and table.ark
    verified = verify_evidence(report, certs, provider)
    check_binding(verified, NONCE, identity.spki_der)
    check_policy(verified, load_policy(provider.client_policy()))


async def test_the_provider_runs_in_a_worker_thread(
    make_simulated: MakeProvider, identity: TlsIdentity
) -> None:
    inner = make_simulated()
    seen: list[int] = []

    class Recording:
        name, simulated = "simulated", True

        def get_report(self, report_data: bytes) -> Evidence:
            seen.append(threading.get_ident())
            return inner.get_report(report_data)

    await Agent(Recording(), identity.spki_der).attest(NONCE, identity.spki_der)
    assert seen and seen[0] != threading.get_ident()


async def test_another_key_is_never_bound(make_simulated: MakeProvider, identity: TlsIdentity) -> None:
    agent = Agent(make_simulated(), identity.spki_der)
    other = new_tls_identity(("127.0.0.1",), days=1)
    with pytest.raises(SpkiMismatchError) as caught:
        await agent.attest(NONCE, other.spki_der)
    assert caught.value.code == "agent.spki_mismatch"


@pytest.mark.parametrize("nonce", [bytes(32), b"short", bytes(range(33))], ids=["zero", "short", "long"])
async def test_unusable_nonces_are_the_clients_fault(
    make_simulated: MakeProvider, identity: TlsIdentity, nonce: bytes
) -> None:
    agent = Agent(make_simulated(), identity.spki_der)
    with pytest.raises(AgentRequestError) as caught:
        await agent.attest(nonce, identity.spki_der)
    assert caught.value.code == "agent.nonce_invalid"


async def test_a_report_without_our_report_data_is_refused(
    make_simulated: MakeProvider, identity: TlsIdentity
) -> None:
    inner = make_simulated()

    class Stale:
        name, simulated = "sev-guest", False

        def get_report(self, report_data: bytes) -> Evidence:
            return inner.get_report(bytes(64))

    with pytest.raises(EvidenceError) as caught:
        await Agent(Stale(), identity.spki_der).attest(NONCE, identity.spki_der)
    assert caught.value.code == "agent.report_data_mismatch"


async def test_foreign_os_errors_become_evidence_errors_without_their_text(identity: TlsIdentity) -> None:
    class Broken:
        name, simulated = "sev-guest", False

        def get_report(self, report_data: bytes) -> Evidence:
            raise OSError(5, "secret /path/in/message")

    with pytest.raises(EvidenceError) as caught:
        await Agent(Broken(), identity.spki_der).attest(NONCE, identity.spki_der)
    assert caught.value.code == "agent.evidence_failed" and "secret" not in caught.value.message


async def test_real_providers_produce_documents_the_client_verifies(
    tmp_path: Path, make_simulated: MakeProvider, identity: TlsIdentity
) -> None:
    signer = make_simulated()
    fake_tsm = FakeConfigfsTsm(tmp_path, signer)
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    providers: list[AttestationProvider] = [
        ConfigfsTsmProvider(fake_tsm.base, fs=fake_tsm),
        SevGuestProvider(device, ioctl=FakeSevGuestDriver(signer)),
    ]
    for provider in providers:
        document = await Agent(provider, identity.spki_der).attest(NONCE, identity.spki_der)
        assert document["provider"] == provider.name and document["simulated"] is False
        assert document["product"] == "Milan"
        report, certs = decode(document)
        check_binding(verify_evidence(report, certs, signer), NONCE, identity.spki_der)


async def test_simulated_use_is_logged_loudly(
    make_simulated: MakeProvider, identity: TlsIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="cube_stack.agent")
    agent = Agent(make_simulated(), identity.spki_der)
    await agent.attest(NONCE, identity.spki_der)
    agent_lines = [r for r in caplog.records if r.name == "cube_stack.agent.agent"]
    assert agent_lines and all("SIMULATED" in r.getMessage() for r in agent_lines)  # every line
    assert agent_lines[0].levelname == "WARNING"  # the start-up line is a warning
    assert NONCE.hex() not in caplog.text


def test_agent_arguments_are_validated(make_simulated: MakeProvider) -> None:
    with pytest.raises(AgentSettingsError):
        Agent(object(), b"spki")  # type: ignore[arg-type]
    with pytest.raises(AgentSettingsError):
        Agent(make_simulated(), b"")


# --------------------------------------------------------------------------------------------- selection


def test_auto_prefers_configfs_tsm(tmp_path: Path) -> None:
    tsm = tmp_path / "tsm"
    tsm.mkdir()
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    chosen = select_provider("auto", tsm_path=tsm, device=device, vmpl=1)
    assert isinstance(chosen, ConfigfsTsmProvider) and chosen.privlevel == 1


def test_auto_takes_the_device_without_configfs(tmp_path: Path) -> None:
    device = tmp_path / "sev-guest"
    device.write_bytes(b"")
    chosen = select_provider("auto", tsm_path=tmp_path / "no-tsm", device=device)
    assert isinstance(chosen, SevGuestProvider) and chosen.vmpl == 0


def test_auto_without_hardware_fails_and_never_simulates(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        select_provider("auto", tsm_path=tmp_path / "no-tsm", device=tmp_path / "no-dev")
    assert caught.value.code == "agent.no_tee"
    assert "simulated" in caught.value.message  # says how to get dev mode, but does not do it


def test_explicit_modes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert isinstance(select_provider("configfs-tsm", tsm_path=tmp_path), ConfigfsTsmProvider)
    assert isinstance(select_provider("sev-guest", device=tmp_path / "dev"), SevGuestProvider)
    caplog.set_level("WARNING", logger="cube_stack.agent")
    simulated = select_provider("simulated", simulated=SimulatedOptions(rsa_bits=2048, product=Product.TURIN))
    assert isinstance(simulated, SimulatedProvider) and simulated.product is Product.TURIN
    assert any("SIMULATED" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("mode", "options"),
    [("tdx", None), ("", None), ("auto", SimulatedOptions(rsa_bits=2048))],
    ids=["unknown", "empty", "options-without-simulated-mode"],
)
def test_bad_selections_are_settings_errors(mode: str, options: SimulatedOptions | None) -> None:
    with pytest.raises(AgentSettingsError) as caught:
        select_provider(mode, simulated=options)
    assert caught.value.code == "agent.settings_invalid"


# --------------------------------------------------------------------------------------------- tls, api


def test_spki_helpers_agree_on_every_source(identity: TlsIdentity) -> None:
    pem = identity.cert_pem
    der = identity.certificate.public_bytes(Encoding.DER)
    sources: list[Any] = [identity, identity.certificate, pem, der, identity.certificate.public_key()]
    assert {spki_der(s) for s in sources} == {identity.spki_der}
    assert spki_sha256(pem) == identity.spki_sha256
    with pytest.raises(AgentSettingsError):
        spki_der(b"not a certificate")


def test_the_public_api_is_exactly_all() -> None:
    exported = {name for name in dir(agent_pkg) if not name.startswith("_")}
    modules = {"agent", "configfs", "errors", "evidence", "sevguest", "simulated", "tls"}
    assert exported - modules == set(agent_pkg.__all__)
    assert sorted(agent_pkg.__all__) == sorted(set(agent_pkg.__all__))
