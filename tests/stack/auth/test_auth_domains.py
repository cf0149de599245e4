"""Domains, roles and members over HTTP, and ``AuthService.authorize`` on top of them."""

from __future__ import annotations

import uuid

import httpx
import pytest
from cube_auth_testkit import Account, assert_error, bearer, make_domain, sqlite_only

from cube_stack.auth import AuthorizationError, AuthService, MalformedError, NotFoundError
from cube_stack.auth.permissions import AVAILABLE_ACTIONS


async def _role_id(client: httpx.AsyncClient, token: str, domain_id: str, name: str) -> str:
    roles = (await client.get(f"/domains/{domain_id}/roles", headers=bearer(token))).json()["roles"]
    return next(r["id"] for r in roles if r["name"] == name)


async def _chat_role(client: httpx.AsyncClient, owner: Account, domain_id: str, members: list[str]) -> str:
    body = {"role_name": "chatter", "optional_actions": ["llm_chat_completions"], "optional_members": members}
    response = await client.post(f"/domains/{domain_id}/roles", json=body, headers=bearer(owner.access_token))
    assert response.status_code == 201, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


async def test_create_and_get_domain(client: httpx.AsyncClient, alice: Account) -> None:
    domain = await make_domain(client, alice.access_token, "acme")
    assert domain["route"] == "acme" and domain["status"] == "enabled" and domain["created_by"] == alice.id
    uuid.UUID(domain["id"])
    got = await client.get(f"/domains/{domain['id']}", headers=bearer(alice.access_token))
    assert got.status_code == 200 and got.json()["id"] == domain["id"]


async def test_duplicate_route_conflicts(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    await make_domain(client, alice.access_token, "acme")
    response = await client.post(
        "/domains", json={"name": "x", "route": "acme"}, headers=bearer(bob.access_token)
    )
    assert_error(response, 409, "auth.route_not_available")


@sqlite_only
@pytest.mark.parametrize("route", ["", "1abc", "a b", "a__b", "x" * 40, 7])
async def test_bad_route(client: httpx.AsyncClient, alice: Account, route: object) -> None:
    response = await client.post(
        "/domains", json={"name": "x", "route": route}, headers=bearer(alice.access_token)
    )
    assert response.status_code == 400


async def test_list_domains_shows_membership_only(
    client: httpx.AsyncClient, alice: Account, bob: Account, admin_token: str
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    await make_domain(client, bob.access_token, "bobs")
    listed = (await client.get("/domains", headers=bearer(alice.access_token))).json()
    assert listed["total"] == 1 and [d["id"] for d in listed["domains"]] == [acme["id"]]
    assert listed["offset"] == 0 and listed["limit"] == 10
    everything = (await client.get("/domains?limit=1", headers=bearer(admin_token))).json()
    assert everything["total"] == 2 and len(everything["domains"]) == 1
    assert (await client.get("/domains?limit=0", headers=bearer(admin_token))).status_code == 400
    assert (await client.get("/domains?status=weird", headers=bearer(admin_token))).status_code == 400


async def test_outsider_is_forbidden(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    response = await client.get(f"/domains/{acme['id']}", headers=bearer(bob.access_token))
    assert_error(response, 403, "auth.not_domain_member")
    unknown = await client.get(f"/domains/{uuid.uuid4()}", headers=bearer(bob.access_token))
    assert_error(unknown, 403, "auth.not_domain_member")  # existence is not revealed
    assert_error(
        await client.get("/domains/not-a-uuid", headers=bearer(bob.access_token)), 400, "auth.invalid_field"
    )


async def test_update_domain(client: httpx.AsyncClient, alice: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    response = await client.patch(
        f"/domains/{acme['id']}", json={"name": "ACME", "tags": ["x"]}, headers=bearer(alice.access_token)
    )
    assert response.status_code == 200
    assert response.json()["name"] == "ACME" and response.json()["tags"] == ["x"]
    assert response.json()["updated_by"] == alice.id


async def test_roles_members_and_authorize(
    client: httpx.AsyncClient, service: AuthService, alice: Account, bob: Account
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    bob_principal = await service.authenticate(bob.access_token)
    with pytest.raises(AuthorizationError) as info:
        await service.authorize(bob_principal, acme["id"], "llm_chat_completions_permission")
    assert info.value.code == "auth.not_domain_member"

    role_id = await _chat_role(client, alice, acme["id"], [bob.id])
    await service.authorize(bob_principal, acme["id"], "llm_chat_completions_permission")
    await service.authorize(bob_principal, acme["id"], "membership")
    with pytest.raises(AuthorizationError) as info:
        await service.authorize(bob_principal, acme["id"], "llm_embeddings")
    assert info.value.code == "auth.permission_denied"
    # bob may not manage roles
    response = await client.post(
        f"/domains/{acme['id']}/roles/{role_id}/members",
        json={"members": [alice.id]},
        headers=bearer(bob.access_token),
    )
    assert_error(response, 403, "auth.permission_denied")

    members = (
        await client.get(f"/domains/{acme['id']}/roles/members", headers=bearer(alice.access_token))
    ).json()
    by_member = {m["member_id"]: {r["role_name"] for r in m["roles"]} for m in members["members"]}
    assert by_member == {alice.id: {"admin"}, bob.id: {"chatter"}}
    legacy = await client.get(f"/domain/{acme['id']}/roles/members", headers=bearer(alice.access_token))
    assert legacy.json()["total"] == 2

    actions = await client.post(
        f"/domains/{acme['id']}/roles/{role_id}/actions",
        json={"actions": ["llm_embeddings"]},
        headers=bearer(alice.access_token),
    )
    assert sorted(actions.json()["actions"]) == ["llm_chat_completions", "llm_embeddings"]
    await service.authorize(bob_principal, acme["id"], "llm_embeddings_permission")

    removed = await client.post(
        f"/domains/{acme['id']}/roles/{role_id}/members/delete",
        json={"members": [bob.id]},
        headers=bearer(alice.access_token),
    )
    assert removed.status_code == 204
    with pytest.raises(AuthorizationError):
        await service.authorize(bob_principal, acme["id"], "llm_chat_completions")


async def test_role_member_listing_and_add(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    role_id = await _chat_role(client, alice, acme["id"], [])
    added = await client.post(
        f"/domains/{acme['id']}/roles/{role_id}/members",
        json={"members": [bob.id]},
        headers=bearer(alice.access_token),
    )
    assert added.status_code == 200 and added.json() == {"members": [bob.id]}
    listed = await client.get(
        f"/domains/{acme['id']}/roles/{role_id}/members", headers=bearer(alice.access_token)
    )
    assert listed.json()["members"] == [bob.id] and listed.json()["total"] == 1
    ghost = await client.post(
        f"/domains/{acme['id']}/roles/{role_id}/members",
        json={"members": [str(uuid.uuid4())]},
        headers=bearer(alice.access_token),
    )
    assert_error(ghost, 404, "auth.user_not_found")
    bad_action = await client.post(
        f"/domains/{acme['id']}/roles",
        json={"role_name": "x", "optional_actions": ["fly"]},
        headers=bearer(alice.access_token),
    )
    assert_error(bad_action, 400, "auth.unknown_action")
    dup = await client.post(
        f"/domains/{acme['id']}/roles", json={"role_name": "chatter"}, headers=bearer(alice.access_token)
    )
    assert_error(dup, 409, "auth.role_exists")


async def test_admin_role_is_protected(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    admin_role = await _role_id(client, alice.access_token, acme["id"], "admin")
    role = (
        await client.get(f"/domains/{acme['id']}/roles/{admin_role}", headers=bearer(alice.access_token))
    ).json()
    assert set(role["actions"]) == set(AVAILABLE_ACTIONS)
    deleted = await client.delete(
        f"/domains/{acme['id']}/roles/{admin_role}", headers=bearer(alice.access_token)
    )
    assert_error(deleted, 403, "auth.builtin_role")
    last = await client.post(
        f"/domains/{acme['id']}/roles/{admin_role}/members/delete-all", headers=bearer(alice.access_token)
    )
    assert_error(last, 403, "auth.last_admin")
    leave = await client.request(
        "DELETE",
        f"/domains/{acme['id']}/roles",
        json={"member_ids": [alice.id]},
        headers=bearer(alice.access_token),
    )
    assert_error(leave, 403, "auth.last_admin")


async def test_remove_member_from_domain(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    await _chat_role(client, alice, acme["id"], [bob.id])
    response = await client.request(
        "DELETE",
        f"/domains/{acme['id']}/roles",
        json={"member_ids": [bob.id]},
        headers=bearer(alice.access_token),
    )
    assert response.status_code == 204
    assert_error(
        await client.get(f"/domains/{acme['id']}", headers=bearer(bob.access_token)),
        403,
        "auth.not_domain_member",
    )


async def test_delete_custom_role(client: httpx.AsyncClient, alice: Account, bob: Account) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    role_id = await _chat_role(client, alice, acme["id"], [bob.id])
    assert (
        await client.delete(f"/domains/{acme['id']}/roles/{role_id}", headers=bearer(alice.access_token))
    ).status_code == 204
    missing = await client.get(f"/domains/{acme['id']}/roles/{role_id}", headers=bearer(alice.access_token))
    assert_error(missing, 404, "auth.role_not_found")


async def test_disabled_domain(
    client: httpx.AsyncClient, service: AuthService, alice: Account, bob: Account
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    await _chat_role(client, alice, acme["id"], [bob.id])
    forbidden = await client.post(f"/domains/{acme['id']}/disable", headers=bearer(bob.access_token))
    assert_error(forbidden, 403, "auth.permission_denied")
    disabled = await client.post(f"/domains/{acme['id']}/disable", headers=bearer(alice.access_token))
    assert disabled.status_code == 200 and disabled.content == b""
    bob_p, alice_p = (
        await service.authenticate(bob.access_token),
        await service.authenticate(alice.access_token),
    )
    for principal in (bob_p, alice_p):  # nobody uses the LLM of a disabled domain
        with pytest.raises(AuthorizationError) as info:
            await service.authorize(principal, acme["id"], "llm_chat_completions_permission")
        assert info.value.code == "auth.domain_disabled"
    assert_error(
        await client.get(f"/domains/{acme['id']}", headers=bearer(bob.access_token)),
        403,
        "auth.domain_disabled",
    )
    # its admin can still see and re-enable it
    assert (await client.get(f"/domains/{acme['id']}", headers=bearer(alice.access_token))).json()[
        "status"
    ] == "disabled"
    assert (
        await client.post(f"/domains/{acme['id']}/enable", headers=bearer(alice.access_token))
    ).status_code == 200
    await service.authorize(bob_p, acme["id"], "llm_chat_completions_permission")


async def test_freeze_is_platform_admin_only(
    client: httpx.AsyncClient, service: AuthService, alice: Account, admin_token: str
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    assert_error(
        await client.post(f"/domains/{acme['id']}/freeze", headers=bearer(alice.access_token)),
        403,
        "auth.admin_required",
    )
    assert (
        await client.post(f"/domains/{acme['id']}/freeze", headers=bearer(admin_token))
    ).status_code == 200
    with pytest.raises(AuthorizationError) as info:
        await service.authorize(await service.authenticate(alice.access_token), acme["id"], "read")
    assert info.value.code == "auth.domain_frozen"


async def test_platform_admin_passes_and_unknown_domain(
    client: httpx.AsyncClient, service: AuthService, alice: Account, admin_token: str
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    admin = await service.authenticate(admin_token)
    await service.authorize(admin, acme["id"], "llm_chat_completions_permission")
    with pytest.raises(NotFoundError):
        await service.authorize(admin, str(uuid.uuid4()), "membership")
    with pytest.raises(MalformedError) as info:
        await service.authorize(admin, acme["id"], "fly_permission")
    assert info.value.code == "auth.unknown_permission"


async def test_cube_audit_permission_alias(
    client: httpx.AsyncClient, service: AuthService, alice: Account
) -> None:
    acme = await make_domain(client, alice.access_token, "acme")
    await service.authorize(
        await service.authenticate(alice.access_token), acme["id"], "audit_log_permission"
    )


async def test_available_actions(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/domains/roles/available-actions", headers=bearer(alice.access_token))
    assert response.status_code == 200
    actions = response.json()["available_actions"]
    assert "llm_chat_completions" in actions and "manage_role" in actions
