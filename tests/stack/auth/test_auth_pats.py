"""Personal access tokens: creation with scopes, verification, scope checks, revocation and expiry."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
from cube_auth_testkit import Account, FakeClock, assert_error, bearer, make_domain, sqlite_only

from cube_stack.auth import AuthenticationError, AuthorizationError, AuthService, TokenType
from cube_stack.auth.schema import pats


def _scope(domain_id: str, entity_type: str = "llm", operation: str = "chat", **extra: str) -> dict[str, str]:
    return {"domain_id": domain_id, "entity_type": entity_type, "operation": operation} | extra


async def _create_pat(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    payload = {"name": "editor", "duration": "720h"} | body
    response = await client.post("/pats", json=payload, headers=bearer(account.access_token))
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def acme(client: httpx.AsyncClient, alice: Account) -> dict[str, Any]:
    return await make_domain(client, alice.access_token, "acme")


async def test_secret_is_shown_once_and_stored_hashed(
    client: httpx.AsyncClient, service: AuthService, alice: Account, acme: dict[str, Any]
) -> None:
    created = await _create_pat(client, alice, scopes=[_scope(acme["id"])], description="vscode")
    secret = created["secret"]
    assert secret.startswith("pat_") and created["status"] == "active" and created["description"] == "vscode"
    assert created["scopes"][0]["operation"] == "chat_completions"  # alias resolved
    got = await client.get(f"/pats/{created['id']}", headers=bearer(alice.access_token))
    listed = await client.get("/pats", headers=bearer(alice.access_token))
    assert "secret" not in got.json() and "secret" not in listed.json()["pats"][0]
    assert listed.json()["total"] == 1
    async with service.store.engine.connect() as conn:
        row = (await conn.execute(pats.select())).mappings().one()
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(dict(row))


async def test_pat_authenticates_and_is_scoped(
    client: httpx.AsyncClient, service: AuthService, alice: Account, acme: dict[str, Any]
) -> None:
    other = await make_domain(client, alice.access_token, "other")
    secret = (await _create_pat(client, alice, scopes=[_scope(acme["id"])]))["secret"]
    principal = await service.authenticate(secret)
    assert principal.token_type is TokenType.PAT and principal.user_id == alice.id and principal.token_id
    await service.authorize(principal, acme["id"], "llm_chat_completions_permission")
    await service.authorize(principal, acme["id"], "membership")
    for domain_id, permission in (
        (acme["id"], "llm_embeddings_permission"),
        (acme["id"], "manage_role"),
        (other["id"], "llm_chat_completions_permission"),
    ):
        with pytest.raises(AuthorizationError) as info:
            await service.authorize(principal, domain_id, permission)
        assert info.value.code == "auth.pat_scope"
    # the profile works with a PAT
    profile = await client.get("/users/profile", headers=bearer(secret))
    assert profile.status_code == 200 and profile.json()["id"] == alice.id


async def test_pat_scope_does_not_exceed_membership(
    client: httpx.AsyncClient, service: AuthService, alice: Account, bob: Account, acme: dict[str, Any]
) -> None:
    secret = (await _create_pat(client, bob, scopes=[_scope("*", operation="*")]))["secret"]
    with pytest.raises(AuthorizationError) as info:
        await service.authorize(await service.authenticate(secret), acme["id"], "llm_chat_completions")
    assert info.value.code == "auth.not_domain_member"


async def test_wildcard_and_manage_scopes(
    client: httpx.AsyncClient, service: AuthService, alice: Account, acme: dict[str, Any]
) -> None:
    scopes = [_scope("*", operation="models/read"), _scope(acme["id"], "domains", "manage")]
    principal = await service.authenticate((await _create_pat(client, alice, scopes=scopes))["secret"])
    await service.authorize(principal, acme["id"], "llm_read_permission")
    await service.authorize(principal, acme["id"], "admin")
    await service.authorize(principal, acme["id"], "manage_role")
    with pytest.raises(AuthorizationError):
        await service.authorize(principal, acme["id"], "llm_completions")


async def test_pat_with_domain_scope_manages_domain_over_http(
    client: httpx.AsyncClient, alice: Account, acme: dict[str, Any]
) -> None:
    read_only = (await _create_pat(client, alice, scopes=[_scope(acme["id"], "llm", "read")]))["secret"]
    response = await client.patch(f"/domains/{acme['id']}", json={"name": "n"}, headers=bearer(read_only))
    assert_error(response, 403, "auth.pat_scope")
    manager = (await _create_pat(client, alice, name="m", scopes=[_scope(acme["id"], "domains", "update")]))[
        "secret"
    ]
    assert (
        await client.patch(f"/domains/{acme['id']}", json={"name": "n"}, headers=bearer(manager))
    ).status_code == 200


async def test_revoked_pat_fails(
    client: httpx.AsyncClient, service: AuthService, alice: Account, acme: dict[str, Any]
) -> None:
    created = await _create_pat(client, alice, scopes=[_scope(acme["id"])])
    revoked = await client.patch(f"/pats/{created['id']}/secret/revoke", headers=bearer(alice.access_token))
    assert revoked.status_code == 204
    assert_error(
        await client.get("/users/profile", headers=bearer(created["secret"])), 401, "auth.pat_revoked"
    )
    got = (await client.get(f"/pats/{created['id']}", headers=bearer(alice.access_token))).json()
    assert got["revoked"] is True and got["status"] == "revoked" and "revoked_at" in got


async def test_expired_pat_fails(
    client: httpx.AsyncClient, alice: Account, clock: FakeClock, acme: dict[str, Any]
) -> None:
    created = await _create_pat(client, alice, duration="1h30m", scopes=[_scope(acme["id"])])
    clock.advance(hours=1, minutes=29)
    assert (await client.get("/users/profile", headers=bearer(created["secret"]))).status_code == 200
    clock.advance(minutes=1)
    assert_error(
        await client.get("/users/profile", headers=bearer(created["secret"])), 401, "auth.pat_expired"
    )


async def test_deleted_pat_fails(client: httpx.AsyncClient, alice: Account) -> None:
    created = await _create_pat(client, alice)
    assert (
        await client.delete(f"/pats/{created['id']}", headers=bearer(alice.access_token))
    ).status_code == 204
    assert_error(
        await client.get("/users/profile", headers=bearer(created["secret"])), 401, "auth.invalid_token"
    )


@sqlite_only
@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # wrong secret
        lambda s: f"pat_{uuid.uuid4().hex}_{s.split('_')[2]}",  # unknown id
        lambda s: s + "0",  # wrong length
        lambda s: "pat_",
        lambda s: "pat_x_y",
    ],
)
async def test_forged_pat_fails(
    client: httpx.AsyncClient, service: AuthService, alice: Account, mangle: Any
) -> None:
    secret = (await _create_pat(client, alice))["secret"]
    with pytest.raises(AuthenticationError) as info:
        await service.authenticate(mangle(secret))
    assert info.value.code == "auth.invalid_token"


async def test_pat_cannot_manage_pats_or_domains(client: httpx.AsyncClient, alice: Account) -> None:
    secret = (await _create_pat(client, alice))["secret"]
    response = await client.post("/pats", json={"name": "n", "duration": "1h"}, headers=bearer(secret))
    assert_error(response, 403, "auth.pat_not_allowed")
    assert_error(await client.get("/pats", headers=bearer(secret)), 403, "auth.pat_not_allowed")
    created = await client.post("/domains", json={"name": "n", "route": "nn"}, headers=bearer(secret))
    assert_error(created, 403, "auth.pat_not_allowed")


async def test_other_users_pat_is_not_found(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    created = await _create_pat(client, alice)
    for method, path in (("GET", ""), ("DELETE", ""), ("PATCH", "/secret/revoke")):
        response = await client.request(
            method, f"/pats/{created['id']}{path}", headers=bearer(bob.access_token)
        )
        assert_error(response, 404, "auth.pat_not_found")


@sqlite_only
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "n"}, "auth.missing_field"),
        ({"name": "n", "duration": "1y"}, "auth.invalid_duration"),
        ({"name": "n", "duration": "soon"}, "auth.invalid_duration"),
        ({"name": "n", "duration": 3600}, "auth.invalid_duration"),
        ({"name": "n", "duration": "0s"}, "auth.invalid_duration"),
        ({"name": "n", "duration": "9000h"}, "auth.invalid_duration"),
        ({"duration": "1h"}, "auth.missing_field"),
        (
            {"name": "n", "duration": "1h", "scopes": [{"entity_type": "llm", "operation": "chat"}]},
            "auth.missing_field",
        ),
        ({"name": "n", "duration": "1h", "scopes": [_scope("*", "groups", "read")]}, "auth.invalid_scope"),
        ({"name": "n", "duration": "1h", "scopes": [_scope("*", "llm", "fly")]}, "auth.invalid_scope"),
        ({"name": "n", "duration": "1h", "scopes": [_scope("nope")]}, "auth.invalid_field"),
        ({"name": "n", "duration": "1h", "scopes": "all"}, "auth.invalid_field"),
    ],
)
async def test_pat_validation(
    client: httpx.AsyncClient, alice: Account, body: dict[str, Any], code: str
) -> None:
    assert_error(await client.post("/pats", json=body, headers=bearer(alice.access_token)), 400, code)


async def test_durations_in_days(client: httpx.AsyncClient, alice: Account) -> None:
    created = await _create_pat(client, alice, duration="30d")
    assert created["expires_at"] == "2026-12-28T12:00:00Z"


async def test_scope_add_list_remove(
    client: httpx.AsyncClient, service: AuthService, alice: Account, acme: dict[str, Any]
) -> None:
    created = await _create_pat(client, alice)
    assert created["scopes"] == []
    with pytest.raises(AuthorizationError):
        await service.authorize(await service.authenticate(created["secret"]), acme["id"], "llm_completions")
    added = await client.patch(
        f"/pats/{created['id']}/scope/add",
        json={"scopes": [_scope(acme["id"], operation="completions"), _scope(acme["id"])]},
        headers=bearer(alice.access_token),
    )
    assert added.status_code == 200 and len(added.json()["scopes"]) == 2
    await service.authorize(await service.authenticate(created["secret"]), acme["id"], "llm_completions")
    listed = (await client.get(f"/pats/{created['id']}/scope", headers=bearer(alice.access_token))).json()
    assert listed["total"] == 2 and {s["pat_id"] for s in listed["scopes"]} == {created["id"]}
    completions = next(s["id"] for s in listed["scopes"] if s["operation"] == "completions")
    removed = await client.patch(
        f"/pats/{created['id']}/scope/remove",
        json={"scopes_id": [completions]},
        headers=bearer(alice.access_token),
    )
    assert [s["operation"] for s in removed.json()["scopes"]] == ["chat_completions"]
    with pytest.raises(AuthorizationError):
        await service.authorize(await service.authenticate(created["secret"]), acme["id"], "llm_completions")
    cleared = await client.delete(f"/pats/{created['id']}/scope", headers=bearer(alice.access_token))
    assert cleared.status_code == 200
    assert (await client.get(f"/pats/{created['id']}/scope", headers=bearer(alice.access_token))).json()[
        "total"
    ] == 0


async def test_last_used_is_recorded(client: httpx.AsyncClient, alice: Account, clock: FakeClock) -> None:
    created = await _create_pat(client, alice)
    await client.get("/users/profile", headers=bearer(created["secret"]))
    got = (await client.get(f"/pats/{created['id']}", headers=bearer(alice.access_token))).json()
    assert got["last_used_at"] == "2026-11-28T12:00:00Z"
