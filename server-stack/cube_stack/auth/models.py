"""Value objects of the auth service: users, domains, roles, PATs, scopes and the authenticated principal.

These are plain frozen dataclasses with no I/O; the store builds them from rows and the HTTP layer turns
them into SuperMQ's JSON shapes. Secrets (password hashes) are kept out of ``repr`` so that a stray
``log.debug(user)`` cannot leak them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Clock = Callable[[], datetime]  # returns an aware UTC datetime; injected so tests control expiry


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime (the production clock)."""
    return datetime.now(UTC)


class TokenType(enum.IntEnum):
    """SuperMQ's numeric token types (the JWT ``type`` claim)."""

    ACCESS = 0
    REFRESH = 1
    PAT = 4


class UserRole(enum.IntEnum):
    """SuperMQ's numeric user roles (the JWT ``role`` claim, gRPC ``user_role``)."""

    USER = 1
    ADMIN = 2

    @property
    def label(self) -> str:
        """Return the wire name used in user JSON ("user" or "admin")."""
        return "admin" if self is UserRole.ADMIN else "user"


class UserStatus(enum.StrEnum):
    """Whether a user may log in."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class DomainStatus(enum.StrEnum):
    """SuperMQ's domain states; ``number`` is the value gRPC ``RetrieveStatus`` carries."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    FREEZED = "freezed"  # sic: SuperMQ's spelling on the wire

    @property
    def number(self) -> int:
        """Return SuperMQ's internal status number (0 enabled, 1 disabled, 2 freezed)."""
        return {"enabled": 0, "disabled": 1, "freezed": 2}[self.value]


@dataclass(frozen=True)
class User:
    """A user account; ``password_hash`` never leaves the service."""

    id: str
    username: str
    email: str
    first_name: str
    last_name: str
    role: UserRole
    status: UserStatus
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime | None
    verified_at: datetime | None
    password_hash: str = field(repr=False, default="")


@dataclass(frozen=True)
class Domain:
    """A domain (tenant): the unit of membership and of LLM permissions."""

    id: str
    name: str
    route: str
    status: DomainStatus
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_by: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class Role:
    """A named set of domain actions; its members may perform them in the domain."""

    id: str
    domain_id: str
    name: str
    actions: tuple[str, ...]
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Scope:
    """One PAT scope: ``operation`` on ``entity_type`` (``entity_id`` or "*") in a domain (or "*")."""

    id: str
    domain_id: str
    entity_type: str
    entity_id: str
    operation: str


@dataclass(frozen=True)
class PersonalAccessToken:
    """A PAT's metadata; the secret is shown once at creation and only its hash is stored."""

    id: str
    user_id: str
    name: str
    description: str
    issued_at: datetime
    expires_at: datetime
    updated_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    scopes: tuple[Scope, ...] = ()


@dataclass(frozen=True)
class RefreshSession:
    """An active refresh token (its ``jti``) with the label given at login.

    ``family_id`` names the login it descends from (the first session's id, empty: this one starts a
    family); every refresh continues the family, and a replayed spent token revokes all of it.
    """

    id: str
    user_id: str
    description: str
    issued_at: datetime
    expires_at: datetime
    family_id: str = ""


@dataclass(frozen=True)
class TokenPair:
    """What login and refresh return."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


@dataclass(frozen=True)
class Principal:
    """Who made a request: the result of :meth:`AuthService.authenticate`.

    ``token_id`` is the PAT id for a PAT and empty for an access token, so gRPC ``AuthNRes.id`` can be
    filled from it without SuperMQ's "a jti means a PAT" confusion. ``session_id`` is the refresh-token
    family an access token was minted in (its ``sid`` claim; empty for PATs and tokens without one):
    :meth:`AuthService.authorize` refuses it once the family is revoked.
    """

    user_id: str
    role: UserRole
    verified: bool
    token_type: TokenType
    token_id: str = ""
    scopes: tuple[Scope, ...] = ()
    session_id: str = ""

    @property
    def is_admin(self) -> bool:
        """Return whether the user is a platform (super) admin."""
        return self.role is UserRole.ADMIN

    @property
    def is_pat(self) -> bool:
        """Return whether the request was authenticated with a personal access token."""
        return self.token_type is TokenType.PAT
