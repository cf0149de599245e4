"""Authorize over a real grpc.aio server: membership, disabled domains, PAT scopes, platform admin."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from cube_auth_grpc_testkit import World

from cube_stack.auth import (
    AuthenticationError,
    AuthorizationError,
    AuthService,
    DomainStatus,
    MalformedError,
    NotFoundError,
)
from cube_stack.auth.grpc import GrpcAuthClient, GrpcAuthServer, PatRequest, PolicyRequest, Stubs

CHAT = "llm_chat_completions_permission"


async def test_member_is_allowed(client: GrpcAuthClient, world: World) -> None:
    await client.authorize(world.alice.principal, world.domain, CHAT)
    await client.authorize(world.alice.principal, world.domain, "membership")


async def test_platform_admin_passes_domain_checks(client: GrpcAuthClient, world: World) -> None:
    await client.authorize(world.admin.principal, world.domain, CHAT)


async def test_non_member_is_denied(client: GrpcAuthClient, world: World) -> None:
    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(world.bob.principal, world.domain, CHAT)

    assert raised.value.code == "auth.not_domain_member"


async def test_unknown_domain_is_denied_and_not_found_for_admins(
    client: GrpcAuthClient, world: World
) -> None:
    with pytest.raises(AuthorizationError) as member:
        await client.authorize(world.alice.principal, "no-such-domain", CHAT)
    with pytest.raises(NotFoundError) as admin:
        await client.authorize(world.admin.principal, "no-such-domain", CHAT)

    assert (member.value.code, admin.value.code) == ("auth.not_domain_member", "auth.domain_not_found")


async def test_disabled_domain_is_denied(client: GrpcAuthClient, service: AuthService, world: World) -> None:
    await service.set_domain_status(world.alice.principal, world.domain, DomainStatus.DISABLED)

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(world.alice.principal, world.domain, CHAT)

    assert raised.value.code == "auth.domain_disabled"


async def test_role_claimed_by_the_caller_is_not_trusted(client: GrpcAuthClient, world: World) -> None:
    forged = await client.authenticate(world.bob.access_token)
    forged = type(forged)(forged.user_id, type(forged.role)(2), True, forged.token_type)  # "admin"

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(forged, world.domain, CHAT)

    assert raised.value.code == "auth.not_domain_member"


async def test_pat_scope_in_is_allowed(client: GrpcAuthClient, world: World) -> None:
    principal = await client.authenticate(world.pat)

    await client.authorize(principal, world.domain, CHAT)


@pytest.mark.parametrize("permission", ["llm_embeddings_permission", "admin", "update"])
async def test_pat_scope_out_is_denied(client: GrpcAuthClient, world: World, permission: str) -> None:
    principal = await client.authenticate(world.pat)

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(principal, world.domain, permission)

    assert raised.value.code == "auth.pat_scope"


async def test_revoked_pat_is_refused_at_authorize(
    client: GrpcAuthClient, service: AuthService, world: World
) -> None:
    principal = await client.authenticate(world.pat)
    await service.revoke_pat(world.alice.principal, world.pat_id)

    with pytest.raises(AuthenticationError) as raised:
        await client.authorize(principal, world.domain, CHAT)

    assert raised.value.code == "auth.pat_revoked"


async def test_someone_elses_pat_id_is_refused(client: GrpcAuthClient, world: World) -> None:
    pat = PatRequest(pat_id=world.pat_id, user_id=world.bob.id, entity_id=world.domain)
    policy = PolicyRequest(subject=world.bob.id, permission=CHAT, object=world.domain)

    with pytest.raises(AuthenticationError) as raised:
        await client.authorize_policy(policy, pat)

    assert raised.value.code == "auth.invalid_token"


async def test_disabled_user_is_denied(client: GrpcAuthClient, service: AuthService, world: World) -> None:
    from sqlalchemy import update

    from cube_stack.auth.schema import users

    async with service.store.engine.begin() as conn:
        await conn.execute(update(users).where(users.c.id == world.alice.id).values(status="disabled"))

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(world.alice.principal, world.domain, CHAT)

    assert raised.value.code == "auth.user_disabled"


@pytest.mark.parametrize(
    ("who", "allowed"), [("admin", True), ("alice", False)], ids=["platform-admin", "domain-admin"]
)
async def test_platform_admin_check(client: GrpcAuthClient, world: World, who: str, allowed: bool) -> None:
    account = getattr(world, who)
    policy = PolicyRequest(subject=account.id, permission="admin", object="supermq", object_type="platform")

    if allowed:
        await client.authorize_policy(policy)
    else:
        with pytest.raises(AuthorizationError) as raised:
            await client.authorize_policy(policy)
        assert raised.value.code == "auth.admin_required"


@pytest.mark.parametrize(
    ("policy", "code"),
    [
        (PolicyRequest(subject="", permission=CHAT, object="d"), "auth.malformed"),
        (PolicyRequest(subject="u", permission="", object="d"), "auth.malformed"),
        (
            PolicyRequest(subject="u", permission=CHAT, object="d", subject_type="client"),
            "auth.unsupported_subject",
        ),
        (
            PolicyRequest(subject="u", permission=CHAT, object="d", object_type="channel"),
            "auth.unsupported_object",
        ),
        (
            PolicyRequest(subject="u", permission="admin", object="other", object_type="platform"),
            "auth.malformed",
        ),
        (
            PolicyRequest(subject="u", permission="llm_read", object="supermq", object_type="platform"),
            "auth.unknown_permission",
        ),
    ],
    ids=[
        "no-subject",
        "no-permission",
        "client-subject",
        "channel-object",
        "wrong-platform",
        "platform-read",
    ],
)
async def test_malformed_policies_are_invalid_argument(
    client: GrpcAuthClient, world: World, policy: PolicyRequest, code: str
) -> None:
    if policy.subject == "u":
        policy = PolicyRequest(**{**policy.__dict__, "subject": world.alice.id})
    with pytest.raises(MalformedError) as raised:
        await client.authorize_policy(policy)

    assert raised.value.code == code


async def test_unknown_subject_is_denied(client: GrpcAuthClient, world: World) -> None:
    policy = PolicyRequest(subject="no-such-user", permission=CHAT, object=world.domain)

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize_policy(policy)

    assert raised.value.code == "auth.user_not_found"


async def test_pat_cannot_act_as_platform_admin(client: GrpcAuthClient, world: World) -> None:
    policy = PolicyRequest(
        subject=world.alice.id, permission="admin", object="supermq", object_type="platform"
    )
    pat = PatRequest(pat_id=world.pat_id, user_id=world.alice.id, entity_id="supermq")

    with pytest.raises(AuthorizationError) as raised:
        await client.authorize_policy(policy, pat)

    assert raised.value.code == "auth.pat_scope"


async def test_unknown_permission_is_invalid_argument(client: GrpcAuthClient, world: World) -> None:
    with pytest.raises(MalformedError) as raised:
        await client.authorize(world.alice.principal, world.domain, "fly_permission")

    assert raised.value.code == "auth.unknown_permission"


async def test_pat_request_without_required_fields_is_invalid(client: GrpcAuthClient, world: World) -> None:
    pat = PatRequest(pat_id=world.pat_id, user_id=world.alice.id, entity_id="", entity_type="")
    policy = PolicyRequest(subject=world.alice.id, permission=CHAT, object=world.domain)

    with pytest.raises(MalformedError) as raised:
        await client.authorize_policy(policy, pat)

    assert raised.value.code == "auth.malformed"


@pytest.fixture
async def channel(server: GrpcAuthServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.target) as ch:
        yield ch


async def test_wire_shape_of_a_cube_domain_check(
    channel: grpc.aio.Channel, stubs: Stubs, world: World
) -> None:
    pb2 = stubs.auth_pb2
    stub = stubs.auth_pb2_grpc.AuthServiceStub(channel)
    policy = pb2.PolicyReq(
        domain=world.domain,
        subject_type="user",
        subject_kind="users",
        subject=f"{world.domain}_{world.alice.id}",
        permission=CHAT,
        object_type="domain",
        object=world.domain,
    )

    allowed = await stub.Authorize(pb2.AuthZReq(policy_req=policy), timeout=5)
    policy.subject = f"{world.domain}_{world.bob.id}"
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stub.Authorize(pb2.AuthZReq(policy_req=policy), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as malformed:
        await stub.Authorize(pb2.AuthZReq(), timeout=5)

    assert (allowed.authorized, allowed.id) == (True, "")
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert malformed.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_oversized_request_is_refused(channel: grpc.aio.Channel, stubs: Stubs) -> None:
    stub = stubs.auth_pb2_grpc.AuthServiceStub(channel)

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Authenticate(stubs.auth_pb2.AuthNReq(token="x" * 100_000), timeout=5)

    assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
