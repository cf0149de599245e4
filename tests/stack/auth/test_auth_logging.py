"""No secret reaches a log line: a full session with every logger at DEBUG, checked record by record."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from cube_auth_testkit import ADMIN, FakeClock, assert_error, bearer, login, make_domain, user_body
from sqlalchemy import select

from cube_stack.auth import AuthService, AuthSettings
from cube_stack.auth.schema import users


@pytest.fixture
async def service(
    settings: AuthSettings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[AuthService]:
    # Every logger at DEBUG *before* the engine exists: SQLAlchemy pins its loggers to WARN by default
    # and decides per connection whether to log statements.
    for name in ("", "sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "aiosqlite", "asyncpg"):
        caplog.set_level(logging.DEBUG, logger=name)
    svc = await AuthService.open(settings, clock=clock)
    try:
        yield svc
    finally:
        await svc.close()


async def test_no_secret_in_any_log_line(
    client: httpx.AsyncClient, service: AuthService, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_seen: list[str] = [ADMIN["password"]]

    admin = await login(client, ADMIN["username"], ADMIN["password"])
    secrets_seen += admin.values()
    body = user_body("erin")
    secrets_seen.append(body["credentials"]["secret"])
    assert (await client.post("/users", json=body, headers=bearer(admin["access_token"]))).status_code == 201
    erin = await login(client, "erin", body["credentials"]["secret"])
    secrets_seen += erin.values()
    wrong = await client.post("/users/tokens/issue", json={"username": "erin", "password": "guess-guess-1"})
    assert wrong.status_code == 401
    secrets_seen.append("guess-guess-1")

    refresh_headers = bearer(erin["refresh_token"]) | {"Content-Type": "application/json"}
    refreshed = (await client.post("/users/tokens/refresh", headers=refresh_headers)).json()
    secrets_seen += refreshed.values()
    domain = await make_domain(client, refreshed["access_token"], "logs")
    scope = {"domain_id": domain["id"], "entity_type": "llm", "operation": "chat"}
    created = await client.post(
        "/pats",
        json={"name": "p", "duration": "1h", "scopes": [scope]},
        headers=bearer(refreshed["access_token"]),
    )
    pat = created.json()
    secrets_seen.append(pat["secret"])
    principal = await service.authenticate(pat["secret"])
    await service.authorize(principal, domain["id"], "llm_chat_completions_permission")
    await client.patch(f"/pats/{pat['id']}/secret/revoke", headers=bearer(refreshed["access_token"]))
    assert_error(await client.get("/users/profile", headers=bearer(pat["secret"])), 401, "auth.pat_revoked")
    # a token in the URL is not logged either (the access log writes route templates)
    await client.get(f"/pats/{refreshed['access_token']}", headers=bearer(refreshed["access_token"]))
    await client.get(f"/{erin['access_token']}")
    await service.rotate_signing_key()
    # a replayed refresh token revokes its family and logs a warning, without the token
    replay = await client.post("/users/tokens/refresh", headers=refresh_headers)
    assert_error(replay, 401, "auth.refresh_revoked")

    async with service.store.engine.connect() as conn:
        secrets_seen += [r.password_hash for r in await conn.execute(select(users.c.password_hash))]
    key_files = sorted(service.key_files.path.glob("*.pem"))
    assert len(key_files) == 2  # the first key and the rotated one
    secrets_seen += [f.read_text() for f in key_files]
    # the PEM body without its armour lines, and each token's signature on its own
    secrets_seen += [s.splitlines()[1] for s in secrets_seen if s.startswith("-----BEGIN")]
    secrets_seen += [s.rsplit(".", 1)[1] for s in secrets_seen if s.count(".") == 2]

    assert caplog.records, "the session should have logged something"
    events = {getattr(r, "event", None) for r in caplog.records}
    assert {
        "auth.login",
        "auth.login_failed",
        "auth.pat_created",
        "auth.http",
        "auth.refresh_replayed",
    } <= events
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records), "SQL logging was not captured"
    # httpx/httpcore records come from the test's own client (it logs every URL it requests), not the service.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for record in server_records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in secrets_seen:
            assert secret not in text, f"{record.name}: a secret leaked into {record.getMessage()[:80]!r}"
