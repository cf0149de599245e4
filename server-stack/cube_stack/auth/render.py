"""JSON shapes of the HTTP API, as SuperMQ's users, domains and auth services write them.

Pure functions from models to dicts. Timestamps are RFC 3339 in UTC with a ``Z``; unset optional
timestamps are omitted (Go writes its zero time there, which clients treat as unset too).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cube_stack.auth.models import Domain, PersonalAccessToken, RefreshSession, Role, Scope, User


def rfc3339(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _times(out: dict[str, Any], **values: datetime | None) -> dict[str, Any]:
    for key, value in values.items():
        if value is not None:
            out[key] = rfc3339(value)
    return out


def user_json(user: User) -> dict[str, Any]:
    """Render a user; the password hash is never part of it."""
    out: dict[str, Any] = {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "tags": list(user.tags),
        "metadata": user.metadata,
        "status": user.status.value,
        "role": user.role.label,
        "credentials": {"username": user.username},
        "email": user.email,
    }
    return _times(out, created_at=user.created_at, updated_at=user.updated_at, verified_at=user.verified_at)


def domain_json(domain: Domain) -> dict[str, Any]:
    """Render a domain."""
    out: dict[str, Any] = {
        "id": domain.id,
        "name": domain.name,
        "tags": list(domain.tags),
        "metadata": domain.metadata,
        "route": domain.route,
        "status": domain.status.value,
        "created_by": domain.created_by,
    }
    if domain.updated_by:
        out["updated_by"] = domain.updated_by
    return _times(out, created_at=domain.created_at, updated_at=domain.updated_at)


def role_json(role: Role) -> dict[str, Any]:
    """Render a role with its actions."""
    out: dict[str, Any] = {
        "id": role.id,
        "name": role.name,
        "entity_id": role.domain_id,
        "created_by": role.created_by,
        "actions": list(role.actions),
    }
    return _times(out, created_at=role.created_at)


def scope_json(scope: Scope, pat_id: str) -> dict[str, Any]:
    """Render a PAT scope."""
    return {
        "id": scope.id,
        "pat_id": pat_id,
        "domain_id": scope.domain_id,
        "entity_type": scope.entity_type,
        "entity_id": scope.entity_id,
        "operation": scope.operation,
    }


def pat_json(pat: PersonalAccessToken, now: datetime, secret: str | None = None) -> dict[str, Any]:
    """Render a PAT; ``secret`` is included only in the creation response."""
    status = "revoked" if pat.revoked else "expired" if now >= pat.expires_at else "active"
    out: dict[str, Any] = {
        "id": pat.id,
        "user_id": pat.user_id,
        "name": pat.name,
        "description": pat.description,
        "revoked": pat.revoked,
        "status": status,
        "scopes": [scope_json(s, pat.id) for s in pat.scopes],
    }
    if secret is not None:
        out["secret"] = secret
    return _times(
        out,
        issued_at=pat.issued_at,
        expires_at=pat.expires_at,
        updated_at=pat.updated_at,
        last_used_at=pat.last_used_at,
        revoked_at=pat.revoked_at,
    )


def refresh_session_json(session: RefreshSession) -> dict[str, Any]:
    """Render an active refresh session (``GET /users/tokens/refresh-tokens``)."""
    return {"id": session.id, "description": session.description}


def page(name: str, items: list[Any], *, total: int, offset: int, limit: int) -> dict[str, Any]:
    """Render a SuperMQ page: ``{"total", "offset", "limit", name: items}``."""
    return {"total": total, "offset": offset, "limit": limit, name: items}
