"""Request bodies as typed dataclasses: pure parsers from decoded JSON to what the service takes.

Field names and shapes follow SuperMQ's OpenAPI (users.yaml, domains.yaml, auth.yaml) and its Go
validators (username and route patterns, 1024-character names). Unknown keys are ignored, as Go's JSON
decoder does; a known key with the wrong type is a 400 naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cube_stack.auth.errors import MalformedError
from cube_stack.auth.models import UserRole, UserStatus
from cube_stack.auth.permissions import ANY, canonical_scope, validate_actions
from cube_stack.auth.validation import (
    get_object,
    get_str,
    get_str_list,
    parse_duration,
    require_object,
    require_str,
    require_uuid,
)

_USERNAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$")
_ROUTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,35}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def _invalid(message: str) -> MalformedError:
    return MalformedError(message, code="auth.invalid_field")


@dataclass(frozen=True)
class NewUser:
    """``POST /users``: who to create; ``role`` is honoured only for a platform admin caller."""

    first_name: str
    last_name: str
    email: str
    username: str
    secret: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    status: UserStatus
    role: UserRole


def parse_new_user(body: object) -> NewUser:
    """Parse and validate a user-creation body (SuperMQ's ``createUserReq.validate``)."""
    data = require_object(body)
    credentials = get_object(data, "credentials")
    username = require_str(credentials, "username", max_len=64)
    if not _USERNAME.match(username) or "__" in username or "--" in username:
        raise _invalid("invalid username: 1-32 letters, digits, '_' or '-', starting with a letter or digit")
    email = require_str(data, "email", max_len=320)
    if not _EMAIL.match(email):
        raise _invalid("invalid email address")
    status = get_str(data, "status", max_len=16) or "enabled"
    if status not in ("enabled", "disabled"):
        raise _invalid("invalid status: expected 'enabled' or 'disabled'")
    role = get_str(data, "role", max_len=16) or "user"
    if role not in ("user", "admin"):
        raise _invalid("invalid role: expected 'user' or 'admin'")
    return NewUser(
        first_name=require_str(data, "first_name"),
        last_name=require_str(data, "last_name"),
        email=email.lower(),
        username=username,
        secret=require_str(credentials, "secret"),
        tags=tuple(get_str_list(data, "tags")),
        metadata=get_object(data, "metadata"),
        status=UserStatus(status),
        role=UserRole.ADMIN if role == "admin" else UserRole.USER,
    )


@dataclass(frozen=True)
class Login:
    """``POST /users/tokens/issue``: username or email, password and an optional session label."""

    identity: str
    password: str = ""
    description: str = ""

    def __repr__(self) -> str:
        return f"Login(identity={self.identity!r}, password=<redacted>)"


def parse_login(body: object) -> Login:
    """Parse a login body; SuperMQ names the identity field ``username`` even for an email."""
    data = require_object(body)
    identity = get_str(data, "username", max_len=320) or get_str(data, "identity", max_len=320)
    if not identity:
        raise MalformedError("missing username / email", code="auth.missing_field")
    return Login(
        identity=identity,
        password=require_str(data, "password"),
        description=get_str(data, "description") or "",
    )


@dataclass(frozen=True)
class NewDomain:
    """``POST /domains``."""

    id: str | None
    name: str
    route: str
    tags: tuple[str, ...]
    metadata: dict[str, Any]


def parse_new_domain(body: object) -> NewDomain:
    """Parse a domain-creation body; the route is a short identifier or a UUID."""
    data = require_object(body)
    route = require_str(data, "route", max_len=64)
    is_uuid = True
    try:
        require_uuid(route, "route")
    except MalformedError:
        is_uuid = False
    if not is_uuid and (not _ROUTE.match(route) or "__" in route or "--" in route):
        raise _invalid("invalid route: 1-36 letters, digits, '_' or '-', starting with a letter")
    domain_id = get_str(data, "id", max_len=64)
    return NewDomain(
        id=require_uuid(domain_id, "id") if domain_id else None,
        name=require_str(data, "name"),
        route=route,
        tags=tuple(get_str_list(data, "tags")),
        metadata=get_object(data, "metadata"),
    )


@dataclass(frozen=True)
class DomainUpdate:
    """``PATCH /domains/{id}``: only the fields present change."""

    name: str | None
    tags: tuple[str, ...] | None
    metadata: dict[str, Any] | None


def parse_domain_update(body: object) -> DomainUpdate:
    """Parse a domain update body."""
    data = require_object(body)
    return DomainUpdate(
        name=get_str(data, "name"),
        tags=tuple(get_str_list(data, "tags")) if "tags" in data else None,
        metadata=get_object(data, "metadata") if "metadata" in data else None,
    )


def parse_user_ids(body: object, key: str) -> list[str]:
    """Return the canonical user UUIDs listed under ``key``, at least one."""
    data = require_object(body)
    ids = [require_uuid(v, key) for v in get_str_list(data, key)]
    if not ids:
        raise MalformedError(f"missing {key}", code="auth.missing_field")
    return ids


@dataclass(frozen=True)
class NewRole:
    """``POST /domains/{id}/roles``."""

    name: str
    actions: tuple[str, ...]
    members: tuple[str, ...]


def parse_new_role(body: object) -> NewRole:
    """Parse a role-creation body (``role_name``, ``optional_actions``, ``optional_members``)."""
    data = require_object(body)
    return NewRole(
        name=require_str(data, "role_name", max_len=256),
        actions=validate_actions(get_str_list(data, "optional_actions")),
        members=tuple(require_uuid(v, "optional_members") for v in get_str_list(data, "optional_members")),
    )


def parse_actions(body: object) -> tuple[str, ...]:
    """Parse ``{"actions": [...]}`` into known actions, at least one."""
    actions = validate_actions(get_str_list(require_object(body), "actions"))
    if not actions:
        raise MalformedError("missing actions", code="auth.missing_field")
    return actions


@dataclass(frozen=True)
class ScopeSpec:
    """A PAT scope as requested: canonical entity type and operation."""

    domain_id: str
    entity_type: str
    entity_id: str
    operation: str


def parse_scopes(value: object) -> tuple[ScopeSpec, ...]:
    """Parse a list of scope objects (``domain_id`` or "*", ``entity_type``, ``entity_id``, ``operation``)."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > 100:
        raise _invalid("invalid scopes: expected a list of at most 100 scope objects")
    specs: list[ScopeSpec] = []
    for item in value:
        data = require_object(item, "scopes[]")
        domain_id = get_str(data, "domain_id", max_len=64) or get_str(data, "optional_domain_id", max_len=64)
        if not domain_id:
            raise MalformedError("missing scope domain_id (a domain id or '*')", code="auth.missing_field")
        if domain_id != ANY:
            domain_id = require_uuid(domain_id, "domain_id")
        entity_type, operation = canonical_scope(
            require_str(data, "entity_type", max_len=32), require_str(data, "operation", max_len=64)
        )
        entity_id = get_str(data, "entity_id", max_len=64) or ANY
        spec = ScopeSpec(domain_id, entity_type, entity_id, operation)
        if spec not in specs:
            specs.append(spec)
    return tuple(specs)


@dataclass(frozen=True)
class NewPat:
    """``POST /pats``: name, description, lifetime and (our extension) initial scopes."""

    name: str
    description: str
    duration: timedelta
    scopes: tuple[ScopeSpec, ...]


def parse_new_pat(body: object) -> NewPat:
    """Parse a PAT-creation body; ``duration`` is a Go duration ("720h") or days/weeks ("30d")."""
    data = require_object(body)
    duration = data.get("duration")
    if duration is None or duration == "":
        raise MalformedError("missing duration", code="auth.missing_field")
    if not isinstance(duration, str):
        raise MalformedError(
            "invalid duration: expected a string such as '720h'", code="auth.invalid_duration"
        )
    return NewPat(
        name=require_str(data, "name"),
        description=get_str(data, "description") or "",
        duration=parse_duration(duration),
        scopes=parse_scopes(data.get("scopes")),
    )


def parse_scope_ids(body: object) -> list[str]:
    """Parse ``{"scopes_id": [...]}`` from a scope-removal body."""
    return [require_uuid(v, "scopes_id") for v in get_str_list(require_object(body), "scopes_id")]


def parse_token_id(body: object) -> str:
    """Parse ``{"token_id": ...}`` from a refresh-token revocation body."""
    return require_uuid(require_str(require_object(body), "token_id", max_len=64), "token_id")
