"""The happy path over gRPC with the auth service on PostgreSQL (skipped when it is unreachable)."""

from __future__ import annotations

import pytest
from cube_auth_grpc_testkit import World

from cube_stack.auth import AuthorizationError, TokenType
from cube_stack.auth.grpc import GrpcAuthClient

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


async def test_authenticate_and_authorize_on_postgresql(client: GrpcAuthClient, world: World) -> None:
    jwt = await client.authenticate(world.alice.access_token)
    pat = await client.authenticate(world.pat)

    await client.authorize(jwt, world.domain, "llm_chat_completions_permission")
    await client.authorize(pat, world.domain, "llm_chat_completions_permission")
    with pytest.raises(AuthorizationError) as raised:
        await client.authorize(pat, world.domain, "llm_embeddings_permission")

    assert (jwt.token_type, pat.token_type, pat.token_id) == (TokenType.ACCESS, TokenType.PAT, world.pat_id)
    assert raised.value.code == "auth.pat_scope"
