"""`attestation.checkRevocation` reaches the verifier for AMD roots, never for a simulated one."""

from __future__ import annotations

import httpx

from cube_lsp.attestation import load_policy
from cube_lsp.cube.attested import Attestor
from cube_lsp.cube.pinning import PinSet
from cube_lsp.settings import parse_settings

AMD_POLICY = {"version": 1, "measurements": ["ab" * 48], "root_of_trust": "amd"}
SIMULATED_POLICY = AMD_POLICY | {"root_of_trust": {"simulated": "cd" * 32}}


def attestor(check: bool) -> Attestor:
    settings, errors = parse_settings(
        {"endpoint": "https://cube.example", "domain": "d", "attestation": {"checkRevocation": check}}
    )
    assert not errors
    unused = httpx.MockTransport(lambda request: httpx.Response(500))  # _verify_options sends nothing
    return Attestor(settings, unused, PinSet(lifetime_s=3600))


def test_revocation_checks_follow_the_setting_for_amd_roots():
    assert attestor(True)._verify_options(load_policy(AMD_POLICY)).check_revocations is True
    assert attestor(False)._verify_options(load_policy(AMD_POLICY)).check_revocations is False


def test_a_simulated_root_has_no_crl_to_check():
    assert attestor(True)._verify_options(load_policy(SIMULATED_POLICY)).check_revocations is False
