"""Serving: HTTPS with the in-memory key and a pinnable SPKI, health, metrics, the in-process auth client,
and one whole session whose logs are checked for tokens, prompts and completions."""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cube_proxy_testkit import AuthStack, MakeProxy, bearer, llm_scope

from cube_stack.proxy import HttpAuthClient, InProcessAuthClient, TlsIdentity
from tests.support.scripted_backend import Reply, ScriptedBackend


async def test_https_serves_the_generated_key_and_health_names_its_spki(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    async with make_proxy(tls=True) as proxy:
        async with proxy.client.stream("GET", "/health") as response:
            peer = response.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
            await response.aread()
        # A client that does not pin this certificate cannot talk to the proxy at all.
        async with httpx.AsyncClient() as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get(f"{proxy.url}/health")
    spki = (
        x509.load_der_x509_certificate(peer)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert spki == proxy.server.spki_der
    body = response.json()
    assert body["status"] == "pass" and body["service"] == "cube-proxy" and body["tls"] is True
    assert body["spki_sha256"] == proxy.server.app.state.tls_identity.spki_sha256
    assert proxy.server.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")


def test_the_key_never_reaches_disk_in_the_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    identity = TlsIdentity.generate(("localhost",))
    before = set(Path(tempfile.gettempdir()).iterdir())
    identity.ssl_context()  # memfd on Linux: nothing in the temp directory
    assert set(Path(tempfile.gettempdir()).iterdir()) == before
    # Without memfd the fallback is a 0600 temp file holding the key encrypted, removed at once.
    monkeypatch.delattr(os, "memfd_create", raising=False)
    seen: list[tuple[int, bytes]] = []
    real_unlink = os.unlink

    def inspecting_unlink(path: str) -> None:
        seen.append((stat.S_IMODE(os.stat(path).st_mode), Path(path).read_bytes()))
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", inspecting_unlink)
    identity.ssl_context()
    assert [mode for mode, _ in seen] == [0o600, 0o600]
    assert any(b"ENCRYPTED PRIVATE KEY" in data for _, data in seen)
    assert not any(b"BEGIN PRIVATE KEY" in data for _, data in seen)
    assert set(Path(tempfile.gettempdir()).iterdir()) == before


async def test_metrics_count_requests_by_route_template(make_proxy: MakeProxy, stack: AuthStack) -> None:
    async with make_proxy() as proxy:
        await proxy.client.get(f"/{stack.domain}/api/tags", headers=bearer(stack.bob.access_token))
        await proxy.client.get(f"/{stack.domain}/api/tags")
        metrics = await proxy.client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'cube_proxy_requests_total{route="/{domain_id}/api/tags",method="GET",status="200"} 1' in text
    assert 'cube_proxy_requests_total{route="/{domain_id}/api/tags",method="GET",status="401"} 1' in text
    assert stack.domain not in text  # labels are templates, never ids
    assert "cube_proxy_streams_in_flight 0" in text
    async with make_proxy(metrics=False) as proxy:
        assert (await proxy.client.get("/metrics")).status_code == 404


async def test_in_process_auth_client_serves_jwts_and_pats(
    make_proxy: MakeProxy, own_stack: AuthStack
) -> None:
    stack = own_stack
    pat = (await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")]))["secret"]
    auth = InProcessAuthClient(stack.service, jwks_client=HttpAuthClient(stack.url))
    async with make_proxy(auth=auth, auth_url=stack.url) as proxy:
        url = f"/{stack.domain}/api/generate"
        assert (
            await proxy.client.post(url, json={}, headers=bearer(stack.bob.access_token))
        ).status_code == 200
        assert (await proxy.client.post(url, json={}, headers=bearer(pat))).status_code == 200
        chat = await proxy.client.post(f"/{stack.domain}/api/chat", json={}, headers=bearer(pat))
        assert chat.status_code == 403 and chat.json()["code"] == "auth.pat_scope"
        outsider = await proxy.client.post(url, json={}, headers=bearer(stack.carol.access_token))
        assert outsider.status_code == 403 and outsider.json()["code"] == "auth.not_domain_member"
        bad = await proxy.client.post(url, json={}, headers=bearer("pat_garbage"))
        assert bad.status_code == 401 and bad.json()["code"] == "auth.invalid_token"
    await auth.aclose()
    local = InProcessAuthClient(stack.service)  # JWKS straight from the service
    assert (await local.jwks())["keys"][0]["kty"] == "OKP"


async def test_a_whole_session_logs_no_tokens_prompts_or_completions(
    make_proxy: MakeProxy,
    stack: AuthStack,
    scripted_backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    prompt, completion = "PROMPT-7f1c-do-not-log", "COMPLETION-93ab-do-not-log"
    scripted_backend.script(Reply.stream(completion), Reply.failure(500, completion))
    pat = (await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")]))["secret"]
    async with make_proxy(rate_limit_burst=3, rate_limit_per_minute=1) as proxy:
        url = f"/{stack.domain}/api/generate"
        body = {"model": "m", "prompt": prompt}
        ok = await proxy.client.post(url, json=body, headers=bearer(stack.bob.access_token))
        failed = await proxy.client.post(url, json=body, headers=bearer(pat))
        statuses = [ok.status_code, failed.status_code]
        for token in (stack.bob.refresh_token, pat + "x", stack.carol.access_token, stack.bob.access_token):
            statuses.append((await proxy.client.post(url, json=body, headers=bearer(token))).status_code)
        chat = await proxy.client.post(f"/{stack.domain}/api/chat", json=body, headers=bearer(pat))
        statuses.append(chat.status_code)
        statuses.append(
            (await proxy.client.post(url, json=body, headers=bearer(stack.bob.access_token))).status_code
        )
    assert completion in ok.text
    assert statuses == [200, 500, 401, 401, 403, 200, 403, 429]
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "cube_stack.proxy.audit"]
    assert [a["status"] for a in audit] == statuses
    assert set(audit[0]) == {
        "event", "method", "route", "domain", "user_id", "permission", "status",
        "request_bytes", "response_bytes", "latency_ms", "stream", "outcome",
    }  # fmt: skip
    assert (
        audit[0]["user_id"] == stack.bob.id and audit[0]["stream"] is True and audit[0]["request_bytes"] > 0
    )
    assert audit[-1]["outcome"] == "cube_proxy.rate_limited"
    secrets = [
        stack.bob.access_token,
        stack.bob.refresh_token,
        pat,
        stack.carol.access_token,
        prompt,
        completion,
    ]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        assert not [s for s in secrets if s in text], record.name
