"""The auth database schema as SQLAlchemy Core tables, one definition for SQLite and PostgreSQL.

Types are the portable subset: strings, integers, booleans, JSON and :class:`UTCDateTime` (a naive UTC
``TIMESTAMP`` on both engines, aware ``datetime`` in Python). This module describes the *current* schema;
``migrations.py`` is what creates and changes it in a database, and a test checks that a migrated
database matches these tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and returned as an aware UTC datetime on every engine."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert an aware datetime to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Attach UTC to a stored naive timestamp."""
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

ID = 36  # a canonical UUID string

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("email", String(320), nullable=False, unique=True),  # stored lower-case
    Column("first_name", String(1024), nullable=False),
    Column("last_name", String(1024), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("role", SmallInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("verified_at", UTCDateTime),
)

domains = Table(
    "domains",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(1024), nullable=False),
    Column("route", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("created_by", String(ID), ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_by", String(ID)),
    Column("updated_at", UTCDateTime),
)

domain_roles = Table(
    "domain_roles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("domain_id", String(ID), ForeignKey("domains.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("created_by", String(ID), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("domain_id", "name", name="uq_domain_roles_domain_name"),
)

role_actions = Table(
    "role_actions",
    metadata,
    Column("role_id", String(64), ForeignKey("domain_roles.id", ondelete="CASCADE"), primary_key=True),
    Column("action", String(64), primary_key=True),
)

role_members = Table(
    "role_members",
    metadata,
    Column("role_id", String(64), ForeignKey("domain_roles.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("domain_id", String(ID), nullable=False),  # denormalised for "roles of a user in a domain"
    Index("ix_role_members_domain_user", "domain_id", "user_id"),
)

pats = Table(
    "pats",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(1024), nullable=False),
    Column("description", String(1024), nullable=False),
    Column("secret_hash", String(64), nullable=False),  # hex SHA-256 of the whole PAT string
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime),
    Column("last_used_at", UTCDateTime),
    Column("revoked", Boolean, nullable=False),
    Column("revoked_at", UTCDateTime),
)

pat_scopes = Table(
    "pat_scopes",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("pat_id", String(ID), ForeignKey("pats.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("domain_id", String(ID), nullable=False),  # a domain id or "*"
    Column("entity_type", String(32), nullable=False),
    Column("entity_id", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    UniqueConstraint("pat_id", "domain_id", "entity_type", "entity_id", "operation", name="uq_pat_scopes"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID), primary_key=True),  # the refresh token's jti
    Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("description", String(1024), nullable=False),
    Column("issued_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
    # The login this session descends from (the first session's id; the access tokens' `sid`). Replaying
    # a spent refresh token revokes the whole family (migration 3).
    Column("family_id", String(ID), nullable=False, server_default=""),
    Index("ix_refresh_tokens_family_id", "family_id"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),  # RFC 7638 thumbprint of the public key
    Column("algorithm", String(16), nullable=False),
    # Always NULL since migration 2: private keys live in files (keyfiles.py). Before, this held the
    # PKCS#8 PEM; migration 2 retired those keys as exposed and erased the values.
    Column("private_key", Text),
    Column("public_key", String(64), nullable=False),  # base64url raw Ed25519 public key (JWK "x")
    Column("state", String(16), nullable=False),  # active, retiring (verifies only) or retired
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime),
)
