"""``POST /{domainID}/attestation`` over real HTTPS: nonce validation, agent routing, the SPKI handed over."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cube_proxy_testkit import AuthStack, MakeProxy, ManualClock, bearer

from cube_stack.agent import Agent, SimulatedOptions, SimulatedProvider, SimulatedRoot
from cube_stack.tls_identity import TlsIdentity
from cube_wire.report import Product


class FakeAgent:
    """Records what it was asked and answers a fixed document."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.fail = fail

    async def attest(self, nonce: bytes, spki_der: bytes) -> dict[str, Any]:
        self.calls.append((nonce, spki_der))
        if self.fail:
            raise OSError("/dev/sev-guest: no such device")
        return {"provider": "fake", "nonce": nonce.hex()}


async def test_without_an_agent_the_route_is_501(make_proxy: MakeProxy, stack: AuthStack) -> None:
    async with make_proxy() as proxy:
        response = await proxy.client.post(
            f"/{stack.domain}/attestation", json={"nonce": "00" * 32}, headers=bearer(stack.bob.access_token)
        )
    assert response.status_code == 501
    assert response.json()["message"] == "attestation agent not configured"


async def test_agent_gets_the_nonce_and_the_spki_of_this_tls_connection(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    agent = FakeAgent()
    nonce = os.urandom(32)
    async with make_proxy(agent=agent, tls=True) as proxy:
        assert proxy.url.startswith("https://")
        token = bearer(stack.bob.access_token)
        path = f"/{stack.domain}/attestation"
        as_hex = await proxy.client.post(path, json={"nonce": nonce.hex()}, headers=token)
        as_b64 = await proxy.client.post(
            path, json={"nonce": base64.b64encode(nonce).decode()}, headers=token
        )
        as_b64url = await proxy.client.post(
            path, json={"nonce": base64.urlsafe_b64encode(nonce).rstrip(b"=").decode()}, headers=token
        )
        async with proxy.client.stream("POST", path, json={"nonce": nonce.hex()}, headers=token) as streamed:
            peer_der = streamed.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
    for response in (as_hex, as_b64, as_b64url):
        assert response.status_code == 200, response.text
        assert response.json() == {"provider": "fake", "nonce": nonce.hex()}
    peer_spki = (
        x509.load_der_x509_certificate(peer_der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert {call for call in agent.calls} == {(nonce, peer_spki)}
    assert peer_spki == proxy.server.spki_der


BAD_BODIES = {
    "not-json": (b"not json", "cube_proxy.invalid_json"),
    "no-nonce": (b"{}", "cube_proxy.missing_nonce"),
    "number": (b'{"nonce": 5}', "cube_proxy.missing_nonce"),
    "array": (b'["nonce"]', "cube_proxy.missing_nonce"),
    "31-bytes": (('{"nonce": "' + "ab" * 31 + '"}').encode(), "cube_proxy.nonce_length"),
    "33-bytes": (
        ('{"nonce": "' + base64.b64encode(b"x" * 33).decode() + '"}').encode(),
        "cube_proxy.nonce_length",
    ),
    "garbage": (b'{"nonce": "%%%not-base64%%%"}', "cube_proxy.nonce_encoding"),
}


async def test_bad_nonces_are_400(make_proxy: MakeProxy, stack: AuthStack) -> None:
    agent = FakeAgent()
    async with make_proxy(agent=agent) as proxy:
        for name, (body, code) in BAD_BODIES.items():
            response = await proxy.client.post(
                f"/{stack.domain}/attestation", content=body, headers=bearer(stack.bob.access_token)
            )
            assert response.status_code == 400, (name, response.text)
            assert response.json()["code"] == code and response.json()["message"], name
    assert agent.calls == []


async def test_attestation_needs_no_token_and_checks_none(
    make_proxy: MakeProxy, stack: AuthStack, caplog: pytest.LogCaptureFixture
) -> None:
    """A client attests before it trusts the proxy with a token, so the route must not ask for one."""
    caplog.set_level(logging.INFO, logger="cube_stack.proxy.audit")
    agent = FakeAgent()
    async with make_proxy(agent=agent) as proxy:
        path = f"/{stack.domain}/attestation"
        anonymous = await proxy.client.post(path, json={"nonce": "00" * 32})
        garbage = await proxy.client.post(path, json={"nonce": "00" * 32}, headers=bearer("not-a-token"))
        outsider = await proxy.client.post(
            path, json={"nonce": "00" * 32}, headers=bearer(stack.carol.access_token)
        )
    assert [r.status_code for r in (anonymous, garbage, outsider)] == [200, 200, 200]
    assert len(agent.calls) == 3
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cube_stack.proxy.audit"]
    assert [(a["route"], a["status"], a["user_id"], a["permission"]) for a in audit] == [
        ("/{domain_id}/attestation", 200, None, None)
    ] * 3


async def test_attestation_is_rate_limited_per_client_address(
    make_proxy: MakeProxy, stack: AuthStack, clock: ManualClock
) -> None:
    agent = FakeAgent()
    body = {"nonce": "00" * 32}
    async with make_proxy(agent=agent, attestation_burst=2, attestation_rate_per_minute=6) as proxy:
        path = f"/{stack.domain}/attestation"
        allowed = [await proxy.client.post(path, json=body) for _ in range(2)]
        refused = await proxy.client.post(path, json=body)
        # Another source address on loopback has a bucket of its own.
        other_source = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=proxy.url, transport=other_source) as other:
            elsewhere = await other.post(path, json=body)
        clock.advance(10)  # 6 per minute: one token back every 10 s
        later = await proxy.client.post(path, json=body)
    assert [r.status_code for r in allowed] == [200, 200]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert refused.json()["code"] == "cube_proxy.rate_limited"
    assert "attestation" in refused.json()["message"]
    assert elsewhere.status_code == 200 and later.status_code == 200
    assert len(agent.calls) == 4  # the refused request never reached the secure processor


async def test_an_agent_failure_is_500_without_details(make_proxy: MakeProxy, stack: AuthStack) -> None:
    async with make_proxy(agent=FakeAgent(fail=True)) as proxy:
        response = await proxy.client.post(
            f"/{stack.domain}/attestation", json={"nonce": "00" * 32}, headers=bearer(stack.bob.access_token)
        )
    assert response.status_code == 500
    assert response.json() == {"message": "attestation failed", "code": "cube_proxy.attestation_failed"}


async def test_a_nonce_the_agent_refuses_is_the_clients_fault(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    """The real agent (SIMULATED provider) refuses an all-zero nonce; the proxy answers 400 in its words.

    The agent knows nothing of HTTP: mapping its request error to 400 is the proxy's job.
    """
    identity = TlsIdentity.generate(("localhost",), days=1)
    product = Product.MILAN
    provider = SimulatedProvider(
        SimulatedOptions(product=product, rsa_bits=2048), root=SimulatedRoot.generate(product, rsa_bits=2048)
    )
    agent = Agent(provider, identity.spki_der)
    async with make_proxy(agent=agent, identity=identity) as proxy:
        path = f"/{stack.domain}/attestation"
        refused = await proxy.client.post(path, json={"nonce": "00" * 32})
        attested = await proxy.client.post(path, json={"nonce": os.urandom(32).hex()})
    assert refused.status_code == 400
    assert refused.json()["code"] == "agent.nonce_invalid" and "zero" in refused.json()["message"]
    assert attested.status_code == 200 and attested.json()["simulated"] is True
