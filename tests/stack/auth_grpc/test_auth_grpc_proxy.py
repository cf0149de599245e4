"""The proxy's AuthClient over gRPC: PAT subjects, authorization, JWKS sources and error translation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cube_auth_grpc_testkit import World

from cube_stack.auth import AuthService, AuthSettings, create_auth_app
from cube_stack.auth.grpc import GrpcAuthClient, GrpcAuthServer, Stubs, serve_grpc
from cube_stack.proxy import AuthClient, HttpAuthClient, Subject
from cube_stack.proxy.authclient import GrpcProxyAuthClient
from cube_stack.proxy.errors import AuthUnavailableError, ForbiddenError, UnauthenticatedError

CHAT = "llm_chat_completions_permission"


@pytest.fixture
async def adapter(
    server: GrpcAuthServer, stubs: Stubs, service: AuthService, settings: AuthSettings
) -> AsyncIterator[GrpcProxyAuthClient]:
    app = create_auth_app(settings, service=service)
    jwks = HttpAuthClient("http://auth.test", transport=httpx.ASGITransport(app=app))
    auth = GrpcProxyAuthClient(GrpcAuthClient(server.target, stubs=stubs), jwks=jwks)
    try:
        yield auth
    finally:
        await auth.aclose()


def test_it_is_an_auth_client(adapter: GrpcProxyAuthClient) -> None:
    assert isinstance(adapter, AuthClient)


async def test_jwks_comes_from_the_http_source(adapter: GrpcProxyAuthClient, service: AuthService) -> None:
    assert await adapter.jwks() == await service.jwks()


async def test_jwks_from_a_callable(client: GrpcAuthClient, service: AuthService) -> None:
    adapter = GrpcProxyAuthClient(client, jwks=service.jwks)

    assert (await adapter.jwks())["keys"]


async def test_pat_gives_a_pat_subject_that_authorizes_within_scope(
    adapter: GrpcProxyAuthClient, world: World
) -> None:
    subject = await adapter.authenticate_pat(world.pat)

    assert (subject.user_id, subject.pat_id, subject.is_admin) == (world.alice.id, world.pat_id, False)
    await adapter.authorize(subject, world.domain, CHAT)
    with pytest.raises(ForbiddenError) as raised:
        await adapter.authorize(subject, world.domain, "llm_embeddings_permission")
    assert raised.value.code == "auth.pat_scope"


async def test_pat_scope_applies_without_the_handle(adapter: GrpcProxyAuthClient, world: World) -> None:
    subject = Subject(user_id=world.alice.id, pat_id=world.pat_id)  # e.g. rebuilt from a cached decision

    with pytest.raises(ForbiddenError) as raised:
        await adapter.authorize(subject, world.domain, "llm_embeddings_permission")

    assert raised.value.code == "auth.pat_scope"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("jwt", "cube_proxy.invalid_token"),
        ("refresh", "auth.wrong_token_type"),
        ("junk", "auth.invalid_token"),
    ],
)
async def test_non_pats_are_unauthenticated(
    adapter: GrpcProxyAuthClient, world: World, token: str, code: str
) -> None:
    value = {"jwt": world.alice.access_token, "refresh": world.alice.refresh_token, "junk": "pat_x"}[token]

    with pytest.raises(UnauthenticatedError) as raised:
        await adapter.authenticate_pat(value)

    assert raised.value.code == code


async def test_jwt_subject_is_authorized_by_membership(adapter: GrpcProxyAuthClient, world: World) -> None:
    await adapter.authorize(Subject(user_id=world.alice.id, verified=True), world.domain, CHAT)
    with pytest.raises(ForbiddenError) as raised:
        await adapter.authorize(Subject(user_id=world.bob.id), world.domain, CHAT)

    assert raised.value.code == "auth.not_domain_member"


async def test_unknown_domain_for_an_admin_is_forbidden(adapter: GrpcProxyAuthClient, world: World) -> None:
    with pytest.raises(ForbiddenError) as raised:
        await adapter.authorize(Subject(user_id=world.admin.id, is_admin=True), "nope", CHAT)

    assert raised.value.code == "auth.domain_not_found"


async def test_server_down_is_the_proxy_auth_unavailable_error(
    service: AuthService, stubs: Stubs, world: World
) -> None:
    server = await serve_grpc(service, stubs=stubs)
    await server.stop(None)

    async def no_jwks() -> dict[str, Any]:
        return {"keys": []}

    adapter = GrpcProxyAuthClient(GrpcAuthClient(server.target, stubs=stubs), jwks=no_jwks)
    try:
        with pytest.raises(AuthUnavailableError) as pat:
            await adapter.authenticate_pat(world.pat)
        with pytest.raises(AuthUnavailableError) as authz:
            await adapter.authorize(Subject(user_id=world.alice.id), world.domain, CHAT)
    finally:
        await adapter.aclose()

    assert pat.value.code == authz.value.code == "cube_proxy.auth_unavailable"
    assert pat.value.status == 503
