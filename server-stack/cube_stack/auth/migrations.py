"""A small versioned migration runner: the same migrations for SQLite and PostgreSQL.

Why our own and not Alembic: the schema is a dozen tables written with SQLAlchemy Core, whose DDL already
renders per dialect, and the service must migrate itself at start (embedded SQLite and production
PostgreSQL alike) with no separate tool or extra dependency. The runner keeps one row per applied
migration in ``schema_version`` and applies the missing ones, in order, inside one transaction. On
PostgreSQL it first takes a transaction-scoped advisory lock, on SQLite the write lock (``BEGIN
IMMEDIATE``), so processes starting together migrate once.

Rules for changing the schema: never edit an applied migration. Version 1 creates the tables as
``schema.py`` declared them at version 1; a later change to ``schema.py`` comes with migration N that
alters the tables, and ``test_migrations.py`` checks that a migrated database matches ``schema.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cube_stack.auth import schema
from cube_stack.auth.errors import AuthError
from cube_stack.auth.models import utc_now
from cube_stack.auth.store import IMMEDIATE

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x63756265_61757468  # "cubeauth": the advisory lock serialising migrations


@dataclass(frozen=True)
class Migration:
    """One schema change: applied once, in version order, with a synchronous connection."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    tables = [t for t in schema.metadata.sorted_tables if t is not schema.schema_version]
    schema.metadata.create_all(conn, tables=tables, checkfirst=False)  # atomic: all or none exist


MIGRATIONS: tuple[Migration, ...] = (Migration(1, "initial schema", _v1_initial),)
LATEST_VERSION = MIGRATIONS[-1].version


def _apply_pending(conn: Connection) -> list[int]:
    schema.schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0
    if current > LATEST_VERSION:
        raise AuthError(
            f"database schema version {current} is newer than this auth service ({LATEST_VERSION})",
            code="auth.schema_too_new",
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= current:
            continue
        migration.apply(conn)
        conn.execute(
            insert(schema.schema_version).values(
                version=migration.version, description=migration.description, applied_at=utc_now()
            )
        )
        applied.append(migration.version)
    return applied


async def migrate(engine: AsyncEngine) -> list[int]:
    """Apply every pending migration and return the versions applied (empty when up to date)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**IMMEDIATE)  # SQLite: hold the write lock from BEGIN
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
            applied = await conn.run_sync(_apply_pending)
    if applied:
        log.info("auth.schema_migrated versions=%s", applied, extra={"event": "auth.schema_migrated"})
    return applied


async def current_version(engine: AsyncEngine) -> int:
    """Return the schema version recorded in the database (0 for an empty database)."""
    async with engine.connect() as conn:
        exists = await conn.run_sync(lambda c: c.dialect.has_table(c, "schema_version"))
        if not exists:
            return 0
        return (await conn.execute(select(func.max(schema.schema_version.c.version)))).scalar() or 0
