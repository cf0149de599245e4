"""Forged and revoked tokens at the proxy, through each kind of auth client (issue 8, findings 1 and 8).

The proxy verifies access JWTs locally, so a token correctly signed with the auth service's key passes
that step whatever its claims say; the authorize call must then refuse a subject that names no user,
whatever role the token claims, and a token whose refresh-token family was revoked. Each test runs a
real proxy (uvicorn on 127.0.0.1) in front of the real auth service, once per auth client: in process
(``cube-stack up``) and gRPC (``auth.v1``, what ``python -m cube_stack.proxy`` uses).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cube_proxy_testkit import AuthStack, MakeProxy, ManualClock, bearer

from cube_stack.auth.grpc import GrpcAuthClient, serve_grpc
from cube_stack.proxy import AuthClient, HttpAuthClient, InProcessAuthClient
from cube_stack.proxy.authclient import GrpcProxyAuthClient

GENERATE = {"model": "m", "prompt": "p"}
CLIENTS = ["inprocess", "grpc"]


@contextlib.asynccontextmanager
async def auth_client(kind: str, stack: AuthStack) -> AsyncIterator[AuthClient | None]:
    """Yield the proxy's auth client of ``kind``."""
    if kind == "inprocess":
        client = InProcessAuthClient(stack.service)
        yield client
        await client.aclose()
    else:
        server = await serve_grpc(stack.service)
        client = GrpcProxyAuthClient(GrpcAuthClient(server.target), jwks=HttpAuthClient(stack.url))
        try:
            yield client
        finally:
            await client.aclose()
            await server.stop(None)


def _stolen_key(stack: AuthStack) -> tuple[Ed25519PrivateKey, str]:
    """Read the active signing key from its file, as whoever could read that file would."""
    (path,) = stack.service.key_files.path.glob("*.pem")
    key = load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key, path.stem


def _sign(key: Ed25519PrivateKey, kid: str, clock: ManualClock, subject: str, role: int) -> str:
    now = int(clock())
    claims = {"iss": "supermq.auth", "sub": subject, "iat": now, "exp": now + 600, "type": 0, "role": role}
    return jwt.encode({**claims, "verified": True}, key, "EdDSA", headers={"kid": kid})


async def _generate(proxy: Any, domain: str, token: str) -> httpx.Response:
    response: httpx.Response = await proxy.client.post(
        f"/{domain}/api/generate", json=GENERATE, headers=bearer(token)
    )
    return response


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


@pytest.mark.parametrize("kind", CLIENTS)
async def test_admin_claim_for_a_subject_that_names_no_user_is_refused(
    kind: str, make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    key, kid = _stolen_key(own_stack)
    member = _sign(key, kid, clock, own_stack.bob.id, role=1)
    ghost_admin = _sign(key, kid, clock, str(uuid.uuid4()), role=2)
    carol_as_admin = _sign(key, kid, clock, own_stack.carol.id, role=2)  # a real user, not an admin
    own_stack.secrets |= {member, ghost_admin, carol_as_admin}
    async with auth_client(kind, own_stack) as auth, make_proxy(auth=auth, auth_url=own_stack.url) as proxy:
        assert (await _generate(proxy, own_stack.domain, member)).status_code == 200  # the key is right
        _assert_error(await _generate(proxy, own_stack.domain, ghost_admin), 403, "auth.user_not_found")
        _assert_error(await _generate(proxy, own_stack.domain, carol_as_admin), 403, "auth.not_domain_member")


@pytest.mark.parametrize("kind", CLIENTS)
async def test_token_signed_with_another_key_is_refused(
    kind: str, make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    _, kid = _stolen_key(own_stack)
    forged = _sign(Ed25519PrivateKey.generate(), kid, clock, own_stack.admin.id, role=2)
    async with auth_client(kind, own_stack) as auth, make_proxy(auth=auth, auth_url=own_stack.url) as proxy:
        _assert_error(await _generate(proxy, own_stack.domain, forged), 401, "cube_proxy.bad_signature")


async def _tokens(stack: AuthStack, call: Callable[[httpx.AsyncClient], Any]) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        response = await call(client)
    assert response.status_code == 201, response.text
    pair: dict[str, str] = response.json()
    stack.secrets |= set(pair.values())
    return pair


def _refresh(token: str) -> Callable[[httpx.AsyncClient], Any]:
    return lambda c: c.post(
        "/users/tokens/refresh", headers=bearer(token) | {"Content-Type": "application/json"}
    )


@pytest.mark.parametrize("kind", CLIENTS)
async def test_replayed_refresh_token_revokes_the_family_at_the_proxy(
    kind: str, make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    login = {"username": own_stack.bob.username, "password": "bob-password"}
    first = await _tokens(own_stack, lambda c: c.post("/users/tokens/issue", json=login))
    second = await _tokens(own_stack, _refresh(first["refresh_token"]))  # pair B
    other_login = await _tokens(own_stack, lambda c: c.post("/users/tokens/issue", json=login))
    ttl = 5.0
    async with (
        auth_client(kind, own_stack) as auth,
        make_proxy(auth=auth, auth_url=own_stack.url, decision_ttl=ttl) as proxy,
    ):
        assert (await _generate(proxy, own_stack.domain, second["access_token"])).status_code == 200

        # the thief (or the victim) presents the spent first refresh token again
        async with httpx.AsyncClient(base_url=own_stack.url) as client:
            replay = await _refresh(first["refresh_token"])(client)
            _assert_error(replay, 401, "auth.refresh_revoked")
            _assert_error(await _refresh(second["refresh_token"])(client), 401, "auth.refresh_revoked")
            profile = await client.get("/users/profile", headers=bearer(second["access_token"]))
            _assert_error(profile, 401, "auth.session_revoked")

        # the proxy answers from its decision cache until the entry expires, then refuses
        assert (await _generate(proxy, own_stack.domain, second["access_token"])).status_code == 200
        clock.advance(ttl)
        _assert_error(
            await _generate(proxy, own_stack.domain, second["access_token"]), 401, "auth.session_revoked"
        )
        # bob's other login is another family: untouched
        assert (await _generate(proxy, own_stack.domain, other_login["access_token"])).status_code == 200
