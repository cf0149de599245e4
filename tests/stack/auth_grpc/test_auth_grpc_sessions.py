"""Revoked token families over gRPC: the access token's ``sid`` travels as ``cube-session-id`` metadata.

``auth.v1`` has no field for it; a caller that verified a JWT itself (the proxy) sends it alongside
``Authorize``, and the server refuses a session whose refresh-token family was revoked, on the domain
and the platform paths. ``Authenticate`` of such an access token is refused too.
"""

from __future__ import annotations

import dataclasses

import jwt
import pytest
from cube_auth_grpc_testkit import World

from cube_stack.auth import AuthenticationError, AuthorizationError, AuthService
from cube_stack.auth.grpc import GrpcAuthClient
from cube_stack.auth.grpc.client import PolicyRequest

CHAT = "llm_chat_completions_permission"


def _sid(token: str) -> str:
    sid = jwt.decode(token, options={"verify_signature": False})["sid"]
    assert isinstance(sid, str) and sid
    return sid


async def test_revoked_family_is_refused_on_the_domain_path(
    client: GrpcAuthClient, service: AuthService, world: World
) -> None:
    pair = await service.refresh(world.alice.refresh_token)
    principal = dataclasses.replace(world.alice.principal, session_id=_sid(pair.access_token))
    await client.authorize(principal, world.domain, CHAT)
    assert (await client.authenticate(pair.access_token)).user_id == world.alice.id

    with pytest.raises(AuthenticationError):
        await service.refresh(world.alice.refresh_token)  # the spent token again: a replay

    with pytest.raises(AuthenticationError) as refused:
        await client.authorize(principal, world.domain, CHAT)
    assert refused.value.code == "auth.session_revoked"
    with pytest.raises(AuthenticationError) as authn:
        await client.authenticate(pair.access_token)
    assert authn.value.code == "auth.session_revoked"
    # without the metadata, the same question is a plain membership check (a SuperMQ-shaped caller)
    await client.authorize(dataclasses.replace(principal, session_id=""), world.domain, CHAT)


async def test_revoked_family_is_refused_on_the_platform_path(
    client: GrpcAuthClient, service: AuthService, world: World
) -> None:
    policy = PolicyRequest(
        subject=world.admin.id, permission="admin", object="supermq", object_type="platform"
    )
    sid = _sid(world.admin.access_token)
    await client.authorize_policy(policy, session_id=sid)

    await service.revoke_refresh_token(
        world.admin.principal,
        jwt.decode(world.admin.refresh_token, options={"verify_signature": False})["jti"],
    )  # logging out ends the family too

    with pytest.raises(AuthenticationError) as refused:
        await client.authorize_policy(policy, session_id=sid)
    assert refused.value.code == "auth.session_revoked"


async def test_a_subject_that_names_no_user_never_reaches_the_admin_shortcut(
    client: GrpcAuthClient, world: World
) -> None:
    ghost = dataclasses.replace(world.admin.principal, user_id="00000000-0000-4000-8000-000000000000")
    with pytest.raises(AuthorizationError) as refused:
        await client.authorize(ghost, world.domain, CHAT)
    assert refused.value.code == "auth.user_not_found"
