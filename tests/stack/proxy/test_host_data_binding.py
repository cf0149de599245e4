"""The proxy refuses to serve when the launch's HOST_DATA is not the digest of the settings it was given."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest

from cube_stack.agent import SimulatedOptions, SimulatedProvider
from cube_stack.proxy.errors import ProxySettingsError
from cube_stack.proxy.settings import ProxySettings
from cube_stack.proxy.standalone import HostDataMismatchError, build_agent, check_host_data
from cube_stack.tls_identity import TlsIdentity
from cube_wire.report import parse_report

SETTINGS_DIGEST = hashlib.sha256(b'{"auth_endpoint":"https://auth.example.com"}').digest()


def report_with_host_data(host_data: bytes) -> bytes:
    provider = SimulatedProvider(SimulatedOptions(rsa_bits=2048, host_data=host_data))
    return provider.get_report(bytes(64)).report


def test_a_report_carrying_the_settings_digest_passes() -> None:
    check_host_data(report_with_host_data(SETTINGS_DIGEST), SETTINGS_DIGEST)


def test_other_host_data_stops_the_proxy_with_both_values_named() -> None:
    other = hashlib.sha256(b"other settings").digest()
    with pytest.raises(HostDataMismatchError) as caught:
        check_host_data(report_with_host_data(other), SETTINGS_DIGEST)
    assert caught.value.code == "proxy.host_data_mismatch"
    assert other.hex() in caught.value.message and SETTINGS_DIGEST.hex() in caught.value.message


async def test_a_simulated_agent_reports_the_configured_host_data() -> None:
    settings = ProxySettings(attestation="simulated", attestation_host_data=SETTINGS_DIGEST.hex())
    identity = TlsIdentity.generate(("localhost",), days=1)
    agent = await build_agent(settings, identity)
    assert agent is not None
    document = await agent.attest(secrets.token_bytes(32), identity.spki_der)
    assert parse_report(base64.b64decode(document["report"])).host_data == SETTINGS_DIGEST


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "00" * 31])
def test_host_data_setting_must_be_32_bytes_of_hex(value: str) -> None:
    with pytest.raises(ProxySettingsError, match="attestation_host_data"):
        ProxySettings(attestation_host_data=value)
