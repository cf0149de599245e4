"""No token reaches a log record or an error, with every logger (grpc's included) at DEBUG."""

from __future__ import annotations

import logging

import pytest
from cube_auth_grpc_testkit import FakeClock, World

from cube_stack.auth import AuthError
from cube_stack.auth.grpc import GrpcAuthClient
from cube_stack.proxy import Subject
from cube_stack.proxy.authclient import GrpcProxyAuthClient
from cube_stack.proxy.errors import CubeProxyError

CHAT = "llm_chat_completions_permission"


async def test_no_token_in_any_log_record_or_error(
    client: GrpcAuthClient, world: World, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "grpc", "grpc._cython", "cube_stack", "sqlalchemy", "aiosqlite"):
        caplog.set_level(logging.DEBUG, logger=name)
    adapter = GrpcProxyAuthClient(client, jwks=lambda: _no_keys())
    errors: list[Exception] = []

    principal = await client.authenticate(world.pat)
    await client.authorize(principal, world.domain, CHAT)
    await client.authenticate(world.alice.access_token)
    subject = await adapter.authenticate_pat(world.pat)
    await adapter.authorize(subject, world.domain, CHAT)
    attempts = [
        client.authenticate(world.alice.refresh_token),
        client.authenticate(world.pat + "0"),
        client.authenticate(world.pat.replace("pat_", "pat_f", 1)),
        client.authorize(principal, world.domain, "llm_embeddings_permission"),
        adapter.authenticate_pat(world.bob.access_token),
        adapter.authorize(Subject(user_id=world.bob.id), world.domain, CHAT),
    ]
    for attempt in attempts:
        try:
            await attempt
        except (AuthError, CubeProxyError) as exc:
            errors.append(exc)
    clock.advance(hours=3)
    for token in (world.alice.access_token, world.pat):
        try:
            await client.authenticate(token)
        except AuthError as exc:
            errors.append(exc)

    assert len(errors) == len(attempts) + 2
    assert any(r.name.startswith("cube_stack.auth.grpc") for r in caplog.records)  # the check is live
    texts = [r.getMessage() + repr(vars(r)) for r in caplog.records] + [repr(e) for e in errors]
    for secret in world.secrets():
        for fragment in (secret, secret[-24:]):
            assert not [t for t in texts if fragment in t], "a token reached a log record or an error"


async def _no_keys() -> dict[str, object]:
    return {"keys": []}
