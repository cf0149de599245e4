"""Faults: runtime down, client gone mid-stream, auth service down (cached decisions, then 503)."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import httpx
from cube_proxy_testkit import AuthStack, MakeProxy, ManualClock, bearer, llm_scope

from cube_stack.auth.grpc import GrpcAuthClient
from cube_stack.proxy import HttpAuthClient, Subject
from cube_stack.proxy.authclient import GrpcProxyAuthClient
from tests.support.scripted_backend import Reply, ScriptedBackend


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens here once the socket is closed


class CountingAuth(GrpcProxyAuthClient):
    """The proxy's gRPC auth client, counting each call, to prove which requests reach the auth service."""

    def __init__(self, stack: AuthStack) -> None:
        super().__init__(GrpcAuthClient(stack.grpc_target), jwks=HttpAuthClient(stack.url))
        self.calls: dict[str, int] = {"jwks": 0, "authenticate_pat": 0, "authorize": 0}

    async def jwks(self) -> dict[str, Any]:
        self.calls["jwks"] += 1
        return await super().jwks()

    async def authenticate_pat(self, token: str) -> Subject:
        self.calls["authenticate_pat"] += 1
        return await super().authenticate_pat(token)

    async def authorize(self, subject: Subject, domain_id: str, permission: str) -> None:
        self.calls["authorize"] += 1
        await super().authorize(subject, domain_id, permission)


async def test_runtime_down_is_502_with_a_clear_message(make_proxy: MakeProxy, stack: AuthStack) -> None:
    async with make_proxy(ollama_url=f"http://127.0.0.1:{_closed_port()}") as proxy:
        response = await proxy.client.post(
            f"/{stack.domain}/api/generate", json={"model": "m"}, headers=bearer(stack.bob.access_token)
        )
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "cube_proxy.runtime_unavailable"
    assert "model runtime is not reachable" in body["message"]


async def test_client_disconnect_cancels_the_upstream_request(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.hang_after("first"))  # then silent until its client goes away
    async with make_proxy() as proxy:
        path = f"/{stack.domain}/api/generate"
        async with proxy.client.stream(
            "POST", path, json={"model": "m"}, headers=bearer(stack.bob.access_token)
        ) as response:
            first = await anext(response.aiter_lines())
            assert json.loads(first)["response"] == "first"
        # Leaving the block closes the client's connection mid-stream; the proxy must close its own.
        await scripted_backend.wait_for_disconnect_async(1)
    assert scripted_backend.completed.value == 0


async def test_warm_requests_make_no_auth_round_trip(
    make_proxy: MakeProxy, stack: AuthStack, clock: ManualClock
) -> None:
    auth = CountingAuth(stack)
    try:
        async with make_proxy(auth=auth) as proxy:
            pat = (await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")]))["secret"]
            for token in (stack.bob.access_token, pat):
                for _ in range(3):
                    response = await proxy.client.post(
                        f"/{stack.domain}/api/generate", json={"model": "m"}, headers=bearer(token)
                    )
                    assert response.status_code == 200, response.text
            assert auth.calls == {"jwks": 1, "authenticate_pat": 1, "authorize": 2}
            clock.advance(31)  # past decision_ttl: one fresh check each
            for token in (stack.bob.access_token, pat):
                response = await proxy.client.post(
                    f"/{stack.domain}/api/generate", json={"model": "m"}, headers=bearer(token)
                )
                assert response.status_code == 200
            assert auth.calls == {"jwks": 1, "authenticate_pat": 2, "authorize": 4}
    finally:
        await auth.aclose()


async def test_auth_down_uses_cached_decisions_until_they_expire_then_503(
    make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    stack = own_stack
    pat = (await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")]))["secret"]
    async with make_proxy(auth_url=stack.url, auth_grpc=stack.grpc_target, decision_ttl=30) as proxy:

        async def generate(token: str, suffix: str = "/api/generate") -> Any:
            return await proxy.client.post(
                f"/{stack.domain}{suffix}", json={"model": "m"}, headers=bearer(token)
            )

        assert (await generate(stack.bob.access_token)).status_code == 200
        assert (await generate(pat)).status_code == 200
        await stack.server.stop()  # the auth service is gone from here on (HTTP and gRPC)
        await stack.grpc_server.stop(None)

        clock.advance(29)
        assert (await generate(stack.bob.access_token)).status_code == 200  # cached decision
        assert (await generate(pat)).status_code == 200
        uncached = await generate(stack.bob.access_token, "/api/chat")  # another permission: not cached
        assert uncached.status_code == 503 and uncached.json()["code"] == "cube_proxy.auth_unavailable"

        clock.advance(2)  # the cached decisions have expired
        for token in (stack.bob.access_token, pat):
            response = await generate(token)
            assert response.status_code == 503, response.text
            assert response.json()["code"] == "cube_proxy.auth_unavailable"


async def test_unknown_kid_refetches_the_jwks_at_most_once_per_interval(
    make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    stack = own_stack
    auth = CountingAuth(stack)
    try:
        async with make_proxy(auth=auth, auth_url=stack.url, jwks_min_refresh_interval=30) as proxy:
            old = await proxy.client.get(f"/{stack.domain}/api/tags", headers=bearer(stack.bob.access_token))
            assert old.status_code == 200 and auth.calls["jwks"] == 1
            await stack.service.rotate_signing_key()
            async with httpx.AsyncClient(base_url=stack.url) as client:
                issued = await client.post(
                    "/users/tokens/issue", json={"username": "bob", "password": "bob-password"}
                )
            fresh = issued.json()["access_token"]
            stack.secrets |= {fresh, issued.json()["refresh_token"]}
            clock.advance(31)
            new = await proxy.client.get(f"/{stack.domain}/api/tags", headers=bearer(fresh))
            assert new.status_code == 200 and auth.calls["jwks"] == 2  # unknown kid: refetched
            forged = _with_kid(fresh, "no-such-kid")
            for _ in range(3):
                refused = await proxy.client.get(f"/{stack.domain}/api/tags", headers=bearer(forged))
                assert refused.status_code == 401 and refused.json()["code"] == "cube_proxy.unknown_key"
            assert auth.calls["jwks"] == 2  # rate-limited: no refetch within the interval
    finally:
        await auth.aclose()


def _with_kid(token: str, kid: str) -> str:
    header, payload, signature = token.split(".")
    raw = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    raw["kid"] = kid
    encoded = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"
