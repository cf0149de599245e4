"""HTTP handlers and the route table: SuperMQ's users, domains and auth (PAT, JWKS) paths.

Each handler parses (``requests.py``), awaits one :class:`AuthService` method and renders
(``render.py``). Errors are raised, never returned; ``app.py`` maps them to responses once.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cube_stack import __version__
from cube_stack.auth import render
from cube_stack.auth import requests as req
from cube_stack.auth.errors import MalformedError, UnsupportedMediaTypeError
from cube_stack.auth.models import DomainStatus, Principal
from cube_stack.auth.permissions import AVAILABLE_ACTIONS
from cube_stack.auth.service import AuthService, missing_token
from cube_stack.auth.validation import parse_paging, require_object, require_uuid
from cube_stack.json_text import unpaired_surrogate_path

INVALID_JSON = "request body is not a valid JSON, expecting a valid JSON"


def service(request: Request) -> AuthService:
    """Return the app's :class:`AuthService`."""
    return request.app.state.auth_service  # type: ignore[no-any-return]


def bearer_token(request: Request) -> str | None:
    """Return the token of an exact ``Authorization: Bearer <token>`` header, as SuperMQ reads it."""
    header = request.headers.get("authorization")
    if header is None or not header.startswith("Bearer "):
        return None
    return header[len("Bearer ") :] or None


async def principal(request: Request) -> Principal:
    """Authenticate the request's bearer token (access JWT or PAT)."""
    token = bearer_token(request)
    if token is None:
        raise missing_token()
    return await service(request).authenticate(token)


def require_json_content(request: Request) -> None:
    """Raise 415 unless the request says ``Content-Type: application/json``."""
    if "application/json" not in request.headers.get("content-type", "").lower():
        raise UnsupportedMediaTypeError("unsupported content type")


async def read_json(request: Request) -> Any:
    """Return the decoded JSON body (415 without a JSON content type, 400 when undecodable)."""
    require_json_content(request)
    body = await request.body()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError(INVALID_JSON, code="auth.invalid_json") from None
    where = unpaired_surrogate_path(data)
    if where is not None:  # it would fail later, in argon2 or the database driver, as a 500
        raise MalformedError(
            f"{where} holds a lone UTF-16 surrogate, which is not text", code="auth.invalid_text"
        )
    return data


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=headers)


def _empty(status: int) -> Response:
    return Response(status_code=status, media_type="application/json" if status != 204 else None)


def _path_uuid(request: Request, name: str) -> str:
    return require_uuid(request.path_params[name], name)


# health and keys


async def health(request: Request) -> Response:
    """``GET /health``: SuperMQ's health document."""
    body = {
        "status": "pass",
        "version": __version__,
        "commit": "",
        "description": "cube-stack SuperMQ-compatible auth service",
        "build_time": "",
        "instance_id": request.app.state.instance_id,
    }
    return Response(json.dumps(body), media_type="application/health+json")


async def jwks(request: Request) -> Response:
    """``GET /keys/.well-known/jwks.json``: the public keys that verify our tokens."""
    max_age = service(request).settings.jwks_max_age
    headers = {"Cache-Control": f"public, max-age={max_age}, stale-while-revalidate=60"}
    return _json(await service(request).jwks(), headers=headers)


# users and tokens


async def create_user(request: Request) -> Response:
    """``POST /users``: admin-created, or self-registration when enabled (role ignored)."""
    token = bearer_token(request)
    caller = await service(request).authenticate(token) if token else None
    new = req.parse_new_user(await read_json(request))
    user = await service(request).create_user(caller, new)
    return _json(render.user_json(user), 201, headers={"Location": f"/users/{user.id}"})


async def profile(request: Request) -> Response:
    """``GET /users/profile``: the caller's own user."""
    return _json(render.user_json(await service(request).get_user(await principal(request))))


async def issue_token(request: Request) -> Response:
    """``POST /users/tokens/issue``: log in, 201 with access and refresh tokens."""
    login = req.parse_login(await read_json(request))
    # The peer address as the server saw it; forwarded headers count only if the server was told to
    # trust the forwarder. Failed logins back off per account and per this address.
    address = request.client.host if request.client is not None else ""
    pair = await service(request).issue_tokens(
        login.identity, login.password, login.description, address=address
    )
    return _json({"access_token": pair.access_token, "refresh_token": pair.refresh_token}, 201)


async def refresh_token(request: Request) -> Response:
    """``POST /users/tokens/refresh``: refresh token as bearer, JSON content type required, 201."""
    require_json_content(request)
    token = bearer_token(request)
    if token is None:
        raise missing_token()
    pair = await service(request).refresh(token)
    return _json({"access_token": pair.access_token, "refresh_token": pair.refresh_token}, 201)


async def revoke_refresh_token(request: Request) -> Response:
    """``POST /users/tokens/revoke``: revoke one of the caller's refresh tokens by id, 204."""
    caller = await principal(request)
    await service(request).revoke_refresh_token(caller, req.parse_token_id(await read_json(request)))
    return _empty(204)


async def list_refresh_tokens(request: Request) -> Response:
    """``GET /users/tokens/refresh-tokens``: the caller's active refresh sessions."""
    sessions = await service(request).list_refresh_sessions(await principal(request))
    return _json({"refresh_tokens": [render.refresh_session_json(s) for s in sessions]})


# domains


async def create_domain(request: Request) -> Response:
    """``POST /domains``: 201 with the new domain; the caller becomes its admin."""
    caller = await principal(request)
    domain = await service(request).create_domain(caller, req.parse_new_domain(await read_json(request)))
    return _json(render.domain_json(domain), 201, headers={"Location": f"/domains/{domain.id}"})


async def list_domains(request: Request) -> Response:
    """``GET /domains``: the domains the caller belongs to."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    status_text = request.query_params.get("status", "all")
    if status_text not in ("all", *(s.value for s in DomainStatus)):
        raise MalformedError(
            "invalid status: expected enabled, disabled, freezed or all", code="auth.invalid_field"
        )
    status = None if status_text == "all" else DomainStatus(status_text)
    total, domains = await service(request).list_domains(caller, status=status, offset=offset, limit=limit)
    return _json(
        render.page(
            "domains", [render.domain_json(d) for d in domains], total=total, offset=offset, limit=limit
        )
    )


async def get_domain(request: Request) -> Response:
    """``GET /domains/{domainID}``."""
    caller = await principal(request)
    return _json(
        render.domain_json(await service(request).get_domain(caller, _path_uuid(request, "domainID")))
    )


async def update_domain(request: Request) -> Response:
    """``PATCH /domains/{domainID}``: name, tags, metadata."""
    caller = await principal(request)
    change = req.parse_domain_update(await read_json(request))
    domain = await service(request).update_domain(caller, _path_uuid(request, "domainID"), change)
    return _json(render.domain_json(domain))


def _status_handler(status: DomainStatus) -> Any:
    async def handler(request: Request) -> Response:
        caller = await principal(request)
        await service(request).set_domain_status(caller, _path_uuid(request, "domainID"), status)
        return _empty(200)

    handler.__doc__ = f"``POST /domains/{{domainID}}/...``: set status {status.value}, 200 with no body."
    return handler


# roles and members


async def available_actions(request: Request) -> Response:
    """``GET /domains/roles/available-actions``."""
    await principal(request)
    return _json({"available_actions": list(AVAILABLE_ACTIONS)})


async def create_role(request: Request) -> Response:
    """``POST /domains/{domainID}/roles``: 201 with the role."""
    caller = await principal(request)
    new = req.parse_new_role(await read_json(request))
    role = await service(request).create_role(caller, _path_uuid(request, "domainID"), new)
    body = render.role_json(role) | {
        "optional_actions": list(role.actions),
        "optional_members": list(new.members),
    }
    return _json(body, 201)


async def list_roles(request: Request) -> Response:
    """``GET /domains/{domainID}/roles``."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    total, roles = await service(request).list_roles(caller, _path_uuid(request, "domainID"), offset, limit)
    return _json(
        render.page("roles", [render.role_json(r) for r in roles], total=total, offset=offset, limit=limit)
    )


async def remove_domain_members(request: Request) -> Response:
    """``DELETE /domains/{domainID}/roles`` with ``{"member_ids"}``: remove users from every role, 204."""
    caller = await principal(request)
    ids = req.parse_user_ids(await read_json(request), "member_ids")
    await service(request).remove_domain_members(caller, _path_uuid(request, "domainID"), ids)
    return _empty(204)


async def list_domain_members(request: Request) -> Response:
    """``GET /domains/{domainID}/roles/members``: members with their roles."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    total, members = await service(request).list_domain_members(
        caller, _path_uuid(request, "domainID"), offset, limit
    )
    items = [
        {
            "member_id": user_id,
            "roles": [{"role_id": r.id, "role_name": r.name, "actions": list(r.actions)} for r in roles],
        }
        for user_id, roles in members
    ]
    return _json(render.page("members", items, total=total, offset=offset, limit=limit))


async def get_role(request: Request) -> Response:
    """``GET /domains/{domainID}/roles/{roleID}``."""
    caller = await principal(request)
    role = await service(request).get_role(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"]
    )
    return _json(render.role_json(role))


async def delete_role(request: Request) -> Response:
    """``DELETE /domains/{domainID}/roles/{roleID}``: 204."""
    caller = await principal(request)
    await service(request).delete_role(caller, _path_uuid(request, "domainID"), request.path_params["roleID"])
    return _empty(204)


async def add_role_actions(request: Request) -> Response:
    """``POST /domains/{domainID}/roles/{roleID}/actions``: 200 with the role's actions."""
    caller = await principal(request)
    actions = req.parse_actions(await read_json(request))
    result = await service(request).add_role_actions(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"], actions
    )
    return _json({"actions": list(result)})


async def list_role_actions(request: Request) -> Response:
    """``GET /domains/{domainID}/roles/{roleID}/actions``."""
    caller = await principal(request)
    role = await service(request).get_role(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"]
    )
    return _json({"actions": list(role.actions)})


async def add_role_members(request: Request) -> Response:
    """``POST /domains/{domainID}/roles/{roleID}/members``: 200 with the added members."""
    caller = await principal(request)
    ids = req.parse_user_ids(await read_json(request), "members")
    added = await service(request).add_role_members(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"], ids
    )
    return _json({"members": added})


async def list_role_members(request: Request) -> Response:
    """``GET /domains/{domainID}/roles/{roleID}/members``."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    total, members = await service(request).list_role_members(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"], offset, limit
    )
    return _json(render.page("members", members, total=total, offset=offset, limit=limit))


async def delete_role_members(request: Request) -> Response:
    """``POST /domains/{domainID}/roles/{roleID}/members/delete``: 204."""
    caller = await principal(request)
    ids = req.parse_user_ids(await read_json(request), "members")
    await service(request).remove_role_members(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"], ids
    )
    return _empty(204)


async def delete_all_role_members(request: Request) -> Response:
    """``POST /domains/{domainID}/roles/{roleID}/members/delete-all``: 204."""
    caller = await principal(request)
    await service(request).remove_role_members(
        caller, _path_uuid(request, "domainID"), request.path_params["roleID"], None
    )
    return _empty(204)


# personal access tokens


async def create_pat(request: Request) -> Response:
    """``POST /pats``: 201 with the PAT, its secret shown this once."""
    caller = await principal(request)
    pat, secret = await service(request).create_pat(caller, req.parse_new_pat(await read_json(request)))
    return _json(render.pat_json(pat, service(request).now(), secret), 201)


async def list_pats(request: Request) -> Response:
    """``GET /pats``: the caller's PATs, without secrets."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    total, items = await service(request).list_pats(caller, offset, limit)
    now = service(request).now()
    return _json(
        render.page("pats", [render.pat_json(p, now) for p in items], total=total, offset=offset, limit=limit)
    )


async def get_pat(request: Request) -> Response:
    """``GET /pats/{patID}``."""
    caller = await principal(request)
    pat = await service(request).get_pat(caller, _path_uuid(request, "patID"))
    return _json(render.pat_json(pat, service(request).now()))


async def delete_pat(request: Request) -> Response:
    """``DELETE /pats/{patID}``: 204."""
    caller = await principal(request)
    await service(request).delete_pat(caller, _path_uuid(request, "patID"))
    return _empty(204)


async def revoke_pat(request: Request) -> Response:
    """``PATCH /pats/{patID}/secret/revoke``: 204; the PAT fails authentication from now on."""
    caller = await principal(request)
    await service(request).revoke_pat(caller, _path_uuid(request, "patID"))
    return _empty(204)


async def list_pat_scopes(request: Request) -> Response:
    """``GET /pats/{patID}/scope``."""
    caller = await principal(request)
    offset, limit = parse_paging(request.query_params)
    pat = await service(request).get_pat(caller, _path_uuid(request, "patID"))
    scopes = [render.scope_json(s, pat.id) for s in pat.scopes]
    return _json(
        render.page("scopes", scopes[offset : offset + limit], total=len(scopes), offset=offset, limit=limit)
    )


async def add_pat_scopes(request: Request) -> Response:
    """``PATCH /pats/{patID}/scope/add`` with ``{"scopes": [...]}``: 200 with the PAT."""
    caller = await principal(request)
    body = require_object(await read_json(request))
    specs = req.parse_scopes(body.get("scopes"))
    if not specs:
        raise MalformedError("missing scopes", code="auth.missing_field")
    pat = await service(request).add_pat_scopes(caller, _path_uuid(request, "patID"), specs)
    return _json(render.pat_json(pat, service(request).now()))


async def remove_pat_scopes(request: Request) -> Response:
    """``PATCH /pats/{patID}/scope/remove`` with ``{"scopes_id": [...]}``: 200 with the PAT."""
    caller = await principal(request)
    ids = req.parse_scope_ids(await read_json(request))
    pat = await service(request).remove_pat_scopes(caller, _path_uuid(request, "patID"), ids)
    return _json(render.pat_json(pat, service(request).now()))


async def clear_pat_scopes(request: Request) -> Response:
    """``DELETE /pats/{patID}/scope``: remove every scope, 200."""
    caller = await principal(request)
    await service(request).remove_pat_scopes(caller, _path_uuid(request, "patID"), None)
    return _empty(200)


ROUTES: list[Route] = [
    Route("/health", health, methods=["GET"]),
    Route("/keys/.well-known/jwks.json", jwks, methods=["GET"]),
    Route("/users", create_user, methods=["POST"]),
    Route("/users/profile", profile, methods=["GET"]),
    Route("/users/tokens/issue", issue_token, methods=["POST"]),
    Route("/users/tokens/refresh", refresh_token, methods=["POST"]),
    Route("/users/tokens/revoke", revoke_refresh_token, methods=["POST"]),
    Route("/users/tokens/refresh-tokens", list_refresh_tokens, methods=["GET"]),
    Route("/domains", create_domain, methods=["POST"]),
    Route("/domains", list_domains, methods=["GET"]),
    Route("/domains/roles/available-actions", available_actions, methods=["GET"]),
    Route("/domains/{domainID}", get_domain, methods=["GET"]),
    Route("/domains/{domainID}", update_domain, methods=["PATCH"]),
    Route("/domains/{domainID}/enable", _status_handler(DomainStatus.ENABLED), methods=["POST"]),
    Route("/domains/{domainID}/disable", _status_handler(DomainStatus.DISABLED), methods=["POST"]),
    Route("/domains/{domainID}/freeze", _status_handler(DomainStatus.FREEZED), methods=["POST"]),
    Route("/domains/{domainID}/roles", create_role, methods=["POST"]),
    Route("/domains/{domainID}/roles", list_roles, methods=["GET"]),
    Route("/domains/{domainID}/roles", remove_domain_members, methods=["DELETE"]),
    Route("/domains/{domainID}/roles/members", list_domain_members, methods=["GET"]),
    # The spec's (typo) path; the Go router serves the plural one above.
    Route("/domain/{domainID}/roles/members", list_domain_members, methods=["GET"]),
    Route("/domains/{domainID}/roles/{roleID}", get_role, methods=["GET"]),
    Route("/domains/{domainID}/roles/{roleID}", delete_role, methods=["DELETE"]),
    Route("/domains/{domainID}/roles/{roleID}/actions", add_role_actions, methods=["POST"]),
    Route("/domains/{domainID}/roles/{roleID}/actions", list_role_actions, methods=["GET"]),
    Route("/domains/{domainID}/roles/{roleID}/members", add_role_members, methods=["POST"]),
    Route("/domains/{domainID}/roles/{roleID}/members", list_role_members, methods=["GET"]),
    Route("/domains/{domainID}/roles/{roleID}/members/delete", delete_role_members, methods=["POST"]),
    Route("/domains/{domainID}/roles/{roleID}/members/delete-all", delete_all_role_members, methods=["POST"]),
    Route("/pats", create_pat, methods=["POST"]),
    Route("/pats", list_pats, methods=["GET"]),
    Route("/pats/{patID}", get_pat, methods=["GET"]),
    Route("/pats/{patID}", delete_pat, methods=["DELETE"]),
    Route("/pats/{patID}/secret/revoke", revoke_pat, methods=["PATCH"]),
    Route("/pats/{patID}/scope", list_pat_scopes, methods=["GET"]),
    Route("/pats/{patID}/scope", clear_pat_scopes, methods=["DELETE"]),
    Route("/pats/{patID}/scope/add", add_pat_scopes, methods=["PATCH"]),
    Route("/pats/{patID}/scope/remove", remove_pat_scopes, methods=["PATCH"]),
]


def new_instance_id() -> str:
    """Return a fresh instance id for the health document."""
    return str(uuid.uuid4())
