"""`tls.verify`: the attestation report vouches for the proxy's key; the CA check stays where it must."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.cube.attested import make_client_transport
from cube_lsp.cube.transport import build_ssl_context
from cube_lsp.settings import Settings, TlsSettings, parse_settings, tls_checks_ca


def settings(tls: dict[str, Any], mode: str = "required", endpoint: str = "https://cube.example") -> Settings:
    parsed, errors = parse_settings(
        {"endpoint": endpoint, "domain": "d", "tls": tls, "attestation": {"mode": mode}}
    )
    assert not errors, errors
    return parsed


@pytest.mark.parametrize(
    ("tls", "mode", "checks_ca"),
    [
        ({}, "required", False),  # a key made inside the CVM at start: no CA can have signed it
        ({}, "simulated", False),
        ({"caBundle": "/etc/ca.pem"}, "required", True),  # a bundle given is a bundle used
        ({"verify": "ca"}, "required", True),
        ({"verify": "attestation", "caBundle": "/etc/ca.pem"}, "required", False),
    ],
)
def test_what_vouches_for_the_proxy(tls: dict[str, Any], mode: str, checks_ca: bool) -> None:
    assert tls_checks_ca(settings(tls, mode)) is checks_ca


def test_without_attestation_the_ca_is_always_checked() -> None:
    loopback = "http://127.0.0.1:8900"
    assert tls_checks_ca(settings({}, "off", loopback)) is True
    parsed, errors = parse_settings(
        {"endpoint": loopback, "tls": {"verify": "attestation"}, "attestation": {"mode": "off"}}
    )
    assert [e.field for e in errors] == ["tls.verify"]
    assert parsed.tls.verify == "auto" and tls_checks_ca(parsed) is True


def test_an_unchecked_context_still_negotiates_modern_tls() -> None:
    ctx = build_ssl_context(TlsSettings(), check_ca=False)
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    checked = build_ssl_context(TlsSettings())
    assert checked.verify_mode == ssl.CERT_REQUIRED and checked.check_hostname is True


def _pool_context(transport: Any) -> ssl.SSLContext:
    inner = getattr(transport, "_inner", transport)  # AttestedTransport wraps the pool transport
    return inner._pool._ssl_context  # type: ignore[no-any-return]


async def test_only_the_attested_transport_drops_the_ca_check(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"version": 1, "measurements": ["' + "ab" * 48 + '"], "root_of_trust": "amd"}')
    attested, errors = parse_settings(
        {"endpoint": "https://cube.example", "domain": "d", "attestation": {"policy": str(policy)}}
    )
    assert not errors
    transport = make_client_transport(attested)
    try:
        assert _pool_context(transport).verify_mode == ssl.CERT_NONE
    finally:
        await transport.aclose()
    off = make_client_transport(settings({}, "off", "https://127.0.0.1:8900"))
    try:
        assert _pool_context(off).verify_mode == ssl.CERT_REQUIRED
    finally:
        await off.aclose()
