"""Authenticate over a real grpc.aio server: access JWT, PAT, refresh token, garbage, expiry."""

from __future__ import annotations

import grpc
import pytest
from cube_auth_grpc_testkit import FakeClock, World

from cube_stack.auth import AuthenticationError, TokenType, UserRole
from cube_stack.auth.grpc import GrpcAuthClient, GrpcAuthServer, Stubs
from cube_stack.auth.grpc.server import ERROR_CODE_KEY


async def test_access_jwt_gives_the_user_and_an_empty_id(client: GrpcAuthClient, world: World) -> None:
    principal = await client.authenticate(world.alice.access_token)

    assert principal.user_id == world.alice.id
    assert principal.role is UserRole.USER
    assert principal.verified is True  # created by an admin
    assert principal.token_type is TokenType.ACCESS
    assert principal.token_id == ""


async def test_admin_access_jwt_carries_role_2(client: GrpcAuthClient, world: World) -> None:
    principal = await client.authenticate(world.admin.access_token)

    assert (principal.user_id, principal.role) == (world.admin.id, UserRole.ADMIN)


async def test_pat_gives_its_id(client: GrpcAuthClient, world: World) -> None:
    principal = await client.authenticate(world.pat)

    assert principal.user_id == world.alice.id
    assert principal.token_type is TokenType.PAT
    assert principal.token_id == world.pat_id


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("", "auth.missing_token"),
        ("not-a-token", "auth.invalid_token"),
        ("a.b.c", "auth.invalid_token"),
        ("pat_" + "0" * 32 + "_" + "0" * 64, "auth.invalid_token"),
        ("pat_garbage", "auth.invalid_token"),
    ],
    ids=["empty", "garbage", "three-dots", "unknown-pat", "malformed-pat"],
)
async def test_bad_tokens_are_unauthenticated(
    client: GrpcAuthClient, world: World, token: str, code: str
) -> None:
    with pytest.raises(AuthenticationError) as raised:
        await client.authenticate(token)

    assert raised.value.code == code


async def test_refresh_token_is_refused(client: GrpcAuthClient, world: World) -> None:
    with pytest.raises(AuthenticationError) as raised:
        await client.authenticate(world.alice.refresh_token)

    assert raised.value.code == "auth.wrong_token_type"


async def test_expired_access_token_is_refused(
    client: GrpcAuthClient, world: World, clock: FakeClock
) -> None:
    clock.advance(hours=1, seconds=1)

    with pytest.raises(AuthenticationError) as raised:
        await client.authenticate(world.alice.access_token)

    assert raised.value.code == "auth.token_expired"


async def test_expired_pat_is_refused(client: GrpcAuthClient, world: World, clock: FakeClock) -> None:
    clock.advance(hours=2)

    with pytest.raises(AuthenticationError) as raised:
        await client.authenticate(world.pat)

    assert raised.value.code == "auth.pat_expired"


async def test_wire_status_details_and_code_trailer(
    server: GrpcAuthServer, stubs: Stubs, world: World
) -> None:
    token = world.alice.refresh_token
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = stubs.auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Authenticate(stubs.auth_pb2.AuthNReq(token=token), timeout=5)
        reply = await stub.Authenticate(stubs.auth_pb2.AuthNReq(token=world.pat), timeout=5)

    error = raised.value
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert token not in (error.details() or "")
    assert (ERROR_CODE_KEY, "auth.wrong_token_type") in tuple(error.trailing_metadata() or ())
    assert (reply.id, reply.user_id, reply.user_role) == (world.pat_id, world.alice.id, 1)
