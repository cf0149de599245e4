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
A table that a later migration changes is frozen here in its earlier form (:func:`_v1_metadata`), so a
new database takes the same steps as an old one. SQLite cannot alter a column, so such a change
rebuilds the table (:func:`_rebuild_sqlite`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from cube_stack.auth import schema
from cube_stack.auth.errors import AuthError
from cube_stack.auth.keys import RETIRED
from cube_stack.auth.models import utc_now
from cube_stack.auth.schema import ID, UTCDateTime
from cube_stack.auth.store import IMMEDIATE

log = logging.getLogger(__name__)

_PG_LOCK_KEY = 0x63756265_61757468  # "cubeauth": the advisory lock serialising migrations


@dataclass(frozen=True)
class Migration:
    """One schema change: applied once, in version order, with a synchronous connection."""

    version: int
    description: str
    apply: Callable[[Connection], None]


_CHANGED_SINCE_V1 = ("refresh_tokens", "signing_keys")


def _signing_keys_table(md: MetaData, *, private_key_required: bool, name: str = "signing_keys") -> Table:
    return Table(
        name,
        md,
        Column("kid", String(64), primary_key=True),
        Column("algorithm", String(16), nullable=False),
        Column("private_key", Text, nullable=not private_key_required),
        Column("public_key", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("retired_at", UTCDateTime),
    )


def _v1_metadata() -> MetaData:
    """Return the tables as version 1 created them: schema.py's, with the since-changed ones frozen."""
    md = MetaData()
    for table in schema.metadata.sorted_tables:
        if table is not schema.schema_version and table.name not in _CHANGED_SINCE_V1:
            table.to_metadata(md)
    Table(
        "refresh_tokens",
        md,
        Column("id", String(ID), primary_key=True),
        Column("user_id", String(ID), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("description", String(1024), nullable=False),
        Column("issued_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        Column("revoked_at", UTCDateTime),
    )
    _signing_keys_table(md, private_key_required=True)
    return md


def _v1_initial(conn: Connection) -> None:
    _v1_metadata().create_all(conn, checkfirst=False)  # atomic: all or none exist


def _rebuild_sqlite(conn: Connection, new: Table, old_name: str) -> None:
    """Replace SQLite table ``old_name`` by ``new`` (created under a temporary name), keeping its rows."""
    new.create(conn)
    columns = ", ".join(c.name for c in new.columns)
    conn.exec_driver_sql(f"INSERT INTO {new.name} ({columns}) SELECT {columns} FROM {old_name}")
    conn.exec_driver_sql(f"DROP TABLE {old_name}")
    conn.exec_driver_sql(f"ALTER TABLE {new.name} RENAME TO {old_name}")


def _v2_signing_keys_to_files(conn: Connection) -> None:
    """Retire and erase every private key the database holds; the service then makes one in a file.

    Those keys sat in a database file that was world-readable under the default umask, so they are
    treated as exposed: tokens they signed stop verifying and users log in again. PATs are hashes, not
    signed, and keep working.
    """
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite(
            conn,
            _signing_keys_table(MetaData(), private_key_required=False, name="signing_keys_v2"),
            "signing_keys",
        )
    else:
        conn.exec_driver_sql("ALTER TABLE signing_keys ALTER COLUMN private_key DROP NOT NULL")
    keys = schema.signing_keys
    held = keys.c.private_key.is_not(None)
    exposed = conn.execute(select(func.count()).select_from(keys).where(held)).scalar_one()
    if not exposed:
        return
    now = utc_now()
    conn.execute(update(keys).where(held, keys.c.retired_at.is_(None)).values(retired_at=now))
    conn.execute(update(keys).where(held).values(state=RETIRED, private_key=None))
    log.warning(
        "auth.signing_keys_exposed count=%s: the database held private signing keys, readable by anyone "
        "who could read it; they are retired and erased, and a new key is kept in its own 0600 file. "
        "Every user must log in again; personal access tokens keep working",
        exposed,
        extra={"event": "auth.signing_keys_exposed", "count": exposed},
    )


def _v3_refresh_families(conn: Connection) -> None:
    """Give each refresh session a family (its login); sessions that exist start a family each."""
    conn.exec_driver_sql("ALTER TABLE refresh_tokens ADD COLUMN family_id VARCHAR(36) DEFAULT '' NOT NULL")
    conn.execute(update(schema.refresh_tokens).values(family_id=schema.refresh_tokens.c.id))
    conn.exec_driver_sql("CREATE INDEX ix_refresh_tokens_family_id ON refresh_tokens (family_id)")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1_initial),
    Migration(2, "signing keys out of the database", _v2_signing_keys_to_files),
    Migration(3, "refresh token families", _v3_refresh_families),
)
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
