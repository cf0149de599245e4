"""The agent behind the real proxy on uvicorn over TLS: the report binds the key of the very connection.

The proxy runs with the real auth service in process (SQLite in ``tmp_path``, through
``InProcessAuthClient``) and a SIMULATED provider; the client side uses only ``cube_lsp.attestation``. The
runtime is never reached: the attestation route does not forward.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cube_agent_testkit import MakeProvider

from cube_lsp.attestation import (
    AttestationError,
    TrustedRoot,
    VerifyOptions,
    check_binding,
    check_policy,
    load_policy,
    parse_cert_table,
    verify_report,
)
from cube_stack.agent import SIMULATED_MEASUREMENT, Agent, SimulatedProvider, new_tls_identity, peer_spki_der
from cube_stack.auth import AuthService, AuthSettings
from cube_stack.auth.requests import NewDomain
from cube_stack.proxy import InProcessAuthClient, ProxyServer, ProxySettings, TlsIdentity, create_proxy_app

PASSWORD = "admin-password-1"


@dataclass
class Tenant:
    service: AuthService
    domain: str
    token: str


@pytest.fixture
async def tenant(tmp_path: Path) -> AsyncIterator[Tenant]:
    """The auth service on SQLite with its admin, who owns one domain (membership: attestation allowed)."""
    settings = AuthSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        data_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        sqlite_synchronous="off",
        admin_username="admin",
        admin_email="admin@example.com",
        admin_password=PASSWORD,
    )
    service = await AuthService.open(settings)
    try:
        tokens = await service.issue_tokens("admin", PASSWORD)
        principal = await service.authenticate(tokens.access_token)
        domain = await service.create_domain(principal, NewDomain(None, "Acme", "acme", (), {}))
        yield Tenant(service, domain.id, tokens.access_token)
    finally:
        await service.close()


@contextlib.asynccontextmanager
async def serve(
    tenant: Tenant, agent: Agent, identity: TlsIdentity | None, *, tls: bool = True
) -> AsyncIterator[tuple[ProxyServer, httpx.AsyncClient]]:
    """Serve the proxy on 127.0.0.1 port 0 and yield it with a client that trusts its certificate."""
    settings = ProxySettings(host="127.0.0.1", port=0, tls=tls, shutdown_grace=1.0)
    auth = InProcessAuthClient(tenant.service)
    server = ProxyServer(create_proxy_app(settings, auth=auth, agent=agent, identity=identity), settings)
    sock = server.bind()  # listening before serve starts: no readiness polling needed
    task = asyncio.create_task(server.serve([sock]))
    try:
        verify: ssl.SSLContext | bool = True
        if tls:
            verify = ssl.create_default_context(cadata=server.cert_pem.decode("ascii"))
        headers = {"Authorization": f"Bearer {tenant.token}"}
        async with httpx.AsyncClient(
            base_url=server.url, verify=verify, headers=headers, timeout=10
        ) as client:
            yield server, client
    finally:
        server.stop()
        await task
        sock.close()
        await auth.aclose()


async def test_a_report_from_the_proxy_verifies_and_binds_the_connections_key(
    tenant: Tenant, make_simulated: MakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    provider: SimulatedProvider = make_simulated()
    identity = new_tls_identity(("127.0.0.1", "localhost"), days=1)
    nonce = os.urandom(32)
    async with serve(tenant, Agent(provider, identity.spki_der), identity) as (server, client):
        assert server.url.startswith("https://127.0.0.1:")
        path = f"/{tenant.domain}/attestation"
        async with client.stream("POST", path, json={"nonce": nonce.hex()}) as response:
            peer_spki = peer_spki_der(response.extensions["network_stream"].get_extra_info("ssl_object"))
            body = await response.aread()
        assert response.status_code == 200, body
        zero = await client.post(path, json={"nonce": "00" * 32})
        # No token needed: the client attests the proxy before it trusts it with one.
        anonymous = await client.post(path, json={"nonce": nonce.hex()}, headers={"Authorization": ""})
    document = response.json()

    # The client's side, with nothing but cube_lsp.attestation and what it saw on the wire.
    assert peer_spki == identity.spki_der
    assert document["binding"]["spki_sha256"] == hashlib.sha256(peer_spki).hexdigest()
    assert document["simulated"] is True and document["provider"] == "simulated"
    report = base64.b64decode(document["report"])
    certs = parse_cert_table(base64.b64decode(document["certificates"]))
    options = VerifyOptions(extra_roots=(TrustedRoot.from_fingerprint(provider.ark_fingerprint()),))
    verified = verify_report(report, certs, options)
    policy = {
        "version": 1,
        "measurements": [SIMULATED_MEASUREMENT.hex()],
        "root_of_trust": {"simulated": provider.ark_fingerprint()},
    }
    check_policy(verified, load_policy(policy))
    check_binding(verified, nonce, peer_spki)
    with pytest.raises(AttestationError) as caught:
        check_binding(verified, bytes(reversed(nonce)), peer_spki)
    assert caught.value.code == "attestation.binding_mismatch"
    with pytest.raises(AttestationError) as caught:
        check_binding(verified, nonce, new_tls_identity(("127.0.0.1",), days=1).spki_der)
    assert caught.value.code == "attestation.binding_mismatch"

    assert zero.status_code == 400 and zero.json()["code"] == "agent.nonce_invalid"
    assert anonymous.status_code == 200 and anonymous.json()["binding"] == document["binding"]
    assert tenant.token not in caplog.text


async def test_an_agent_made_for_another_key_fails_closed(
    tenant: Tenant, make_simulated: MakeProvider
) -> None:
    stray = new_tls_identity(("127.0.0.1",), days=1)
    agent = Agent(make_simulated(), stray.spki_der)
    async with serve(tenant, agent, identity=None, tls=False) as (
        _server,
        client,
    ):  # the app makes its own key
        response = await client.post(f"/{tenant.domain}/attestation", json={"nonce": os.urandom(32).hex()})
    assert response.status_code == 500
    assert response.json() == {"message": "attestation failed", "code": "cube_proxy.attestation_failed"}
