"""Users and sessions over HTTP: creation, self-registration, login, refresh, profile."""

from __future__ import annotations

import httpx
import pytest
from cube_auth_testkit import ADMIN, Account, assert_error, bearer, login, sqlite_only, user_body

from cube_stack.auth import AuthService


async def test_admin_creates_user(client: httpx.AsyncClient, admin_token: str) -> None:
    response = await client.post("/users", json=user_body("carol", tags=["a"]), headers=bearer(admin_token))
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/users/{body['id']}"
    assert body["credentials"] == {"username": "carol"}
    assert body["email"] == "carol@example.com"
    assert body["role"] == "user" and body["status"] == "enabled" and body["tags"] == ["a"]
    assert "secret" not in str(body) and "password" not in str(body)


async def test_admin_may_create_admin(client: httpx.AsyncClient, admin_token: str) -> None:
    response = await client.post("/users", json=user_body("root2", role="admin"), headers=bearer(admin_token))
    assert response.status_code == 201
    assert response.json()["role"] == "admin"


@sqlite_only
@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"email": "ALICE@example.com"}, "auth.user_exists"),
        ({"email": "other@example.com"}, "auth.user_exists"),
    ],
)
async def test_duplicate_user_conflicts(
    client: httpx.AsyncClient, admin_token: str, alice: Account, change: dict[str, str], code: str
) -> None:
    body = user_body("alice") | change
    response = await client.post("/users", json=body, headers=bearer(admin_token))
    assert_error(response, 409, code)


async def test_duplicate_email_conflicts(client: httpx.AsyncClient, admin_token: str, alice: Account) -> None:
    body = user_body("alice2") | {"email": "alice@example.com"}
    assert_error(await client.post("/users", json=body, headers=bearer(admin_token)), 409, "auth.user_exists")


async def test_self_registration_off_by_default(client: httpx.AsyncClient, alice: Account) -> None:
    assert_error(await client.post("/users", json=user_body("mallory")), 401, "auth.missing_token")
    response = await client.post("/users", json=user_body("mallory"), headers=bearer(alice.access_token))
    assert_error(response, 403, "auth.admin_required")


@pytest.mark.parametrize("settings_overrides", [{"allow_self_register": True}])
async def test_self_registration_ignores_role(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", json=user_body("mallory", role="admin"))
    assert response.status_code == 201
    assert response.json()["role"] == "user"
    assert "verified_at" not in response.json()


@sqlite_only
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (user_body("x") | {"first_name": ""}, "auth.missing_field"),
        (user_body("bad name"), "auth.invalid_field"),
        (user_body("a--b"), "auth.invalid_field"),
        (user_body("ok") | {"email": "not-an-email"}, "auth.invalid_field"),
        (user_body("ok") | {"credentials": {"username": "ok", "secret": "short"}}, "auth.weak_password"),
        (user_body("ok") | {"credentials": {"username": "ok", "secret": 12345678}}, "auth.invalid_field"),
        (user_body("ok") | {"tags": "nope"}, "auth.invalid_field"),
        (user_body("ok") | {"metadata": []}, "auth.invalid_field"),
        (user_body("ok") | {"role": "root"}, "auth.invalid_field"),
        ({"credentials": "x"}, "auth.invalid_field"),
    ],
)
async def test_user_validation(client: httpx.AsyncClient, admin_token: str, body: dict, code: str) -> None:
    assert_error(await client.post("/users", json=body, headers=bearer(admin_token)), 400, code)


async def test_login_by_username_and_email(client: httpx.AsyncClient, alice: Account) -> None:
    by_email = await login(client, "alice@example.com", alice.password)
    assert set(by_email) == {"access_token", "refresh_token"}
    profile = await client.get("/users/profile", headers=bearer(by_email["access_token"]))
    assert profile.status_code == 200
    assert profile.json()["id"] == alice.id


@sqlite_only
@pytest.mark.parametrize("identity", ["alice", "nobody", "nobody@example.com"])
async def test_bad_credentials(client: httpx.AsyncClient, alice: Account, identity: str) -> None:
    response = await client.post(
        "/users/tokens/issue", json={"username": identity, "password": "wrong-password"}
    )
    assert_error(response, 401, "auth.invalid_credentials")


async def test_disabled_user_cannot_log_in(client: httpx.AsyncClient, admin_token: str) -> None:
    body = user_body("dora", status="disabled")
    assert (await client.post("/users", json=body, headers=bearer(admin_token))).status_code == 201
    response = await client.post(
        "/users/tokens/issue", json={"username": "dora", "password": "dora-password"}
    )
    assert_error(response, 401, "auth.user_disabled")


async def test_profile_requires_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/users/profile"), 401, "auth.missing_token")


async def test_refresh_issues_new_pair_and_revokes_old(client: httpx.AsyncClient, alice: Account) -> None:
    headers = bearer(alice.refresh_token) | {"Content-Type": "application/json"}
    response = await client.post("/users/tokens/refresh", headers=headers)
    assert response.status_code == 201
    pair = response.json()
    assert (await client.get("/users/profile", headers=bearer(pair["access_token"]))).status_code == 200
    # the new one works once, and then it is spent too
    new_headers = bearer(pair["refresh_token"]) | {"Content-Type": "application/json"}
    third = await client.post("/users/tokens/refresh", headers=new_headers)
    assert third.status_code == 201
    assert (
        await client.get("/users/profile", headers=bearer(third.json()["access_token"]))
    ).status_code == 200


async def test_replayed_refresh_token_revokes_the_family(client: httpx.AsyncClient, alice: Account) -> None:
    headers = bearer(alice.refresh_token) | {"Content-Type": "application/json"}
    pair = (await client.post("/users/tokens/refresh", headers=headers)).json()
    # the old refresh token is spent: presenting it again is a replay, so the whole login is revoked
    assert_error(await client.post("/users/tokens/refresh", headers=headers), 401, "auth.refresh_revoked")
    new_headers = bearer(pair["refresh_token"]) | {"Content-Type": "application/json"}
    assert_error(await client.post("/users/tokens/refresh", headers=new_headers), 401, "auth.refresh_revoked")
    assert_error(
        await client.get("/users/profile", headers=bearer(pair["access_token"])), 401, "auth.session_revoked"
    )
    assert_error(
        await client.get("/users/profile", headers=bearer(alice.access_token)), 401, "auth.session_revoked"
    )
    # another login of the same user is another family and keeps working
    fresh = await login(client, "alice", alice.password)
    assert (await client.get("/users/profile", headers=bearer(fresh["access_token"]))).status_code == 200


async def test_refresh_requires_json_content_type(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post("/users/tokens/refresh", headers=bearer(alice.refresh_token))
    assert_error(response, 415, "auth.unsupported_content_type")


async def test_access_token_cannot_refresh(client: httpx.AsyncClient, alice: Account) -> None:
    headers = bearer(alice.access_token) | {"Content-Type": "application/json"}
    assert_error(await client.post("/users/tokens/refresh", headers=headers), 401, "auth.wrong_token_type")


async def test_refresh_sessions_list_and_revoke(client: httpx.AsyncClient, alice: Account) -> None:
    second = await client.post(
        "/users/tokens/issue", json={"username": "alice", "password": alice.password, "description": "laptop"}
    )
    listed = await client.get("/users/tokens/refresh-tokens", headers=bearer(alice.access_token))
    assert listed.status_code == 200
    sessions = listed.json()["refresh_tokens"]
    assert len(sessions) == 2 and {"laptop", ""} == {s["description"] for s in sessions}
    laptop = next(s["id"] for s in sessions if s["description"] == "laptop")
    revoked = await client.post(
        "/users/tokens/revoke", json={"token_id": laptop}, headers=bearer(alice.access_token)
    )
    assert revoked.status_code == 204
    headers = bearer(second.json()["refresh_token"]) | {"Content-Type": "application/json"}
    assert_error(await client.post("/users/tokens/refresh", headers=headers), 401, "auth.refresh_revoked")
    again = await client.post(
        "/users/tokens/revoke", json={"token_id": laptop}, headers=bearer(alice.access_token)
    )
    assert_error(again, 404, "auth.refresh_not_found")


async def test_bootstrap_admin_is_idempotent(service: AuthService, settings) -> None:  # type: ignore[no-untyped-def]
    reopened = await AuthService.open(settings, clock=service.now)
    try:
        user = await reopened.store.find_user(ADMIN["username"])
        assert user is not None and user.role.label == "admin"
    finally:
        await reopened.close()
