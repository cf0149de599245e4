"""The SQL store: every query of the auth service, over SQLAlchemy Core and an async engine.

One class, :class:`Store`, turns rows into the frozen models of ``models.py``. Database errors are
translated here, once: a unique-constraint violation becomes :class:`ConflictError`. The engine comes
from :func:`create_engine`, which knows the two supported backends (aiosqlite and asyncpg).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import RowMapping, and_, delete, event, func, insert, or_, select, text, update
from sqlalchemy import true as sql_true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from cube_stack.auth import keys as keymod
from cube_stack.auth import schema as t
from cube_stack.auth.errors import ConflictError
from cube_stack.auth.keyfiles import KeyDirectory
from cube_stack.auth.models import (
    Domain,
    DomainStatus,
    PersonalAccessToken,
    RefreshSession,
    Role,
    Scope,
    User,
    UserRole,
    UserStatus,
)
from cube_stack.auth.settings import AuthSettings
from cube_stack.private_files import create_private_file

_PG_KEY_LOCK = 0x63756265_6B657973  # "cubekeys": serialises first-start key generation across replicas
PAT_TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is written at most this often per PAT


class _DropDataRecords(logging.Filter):
    """Drop library DEBUG records that print bound parameters or result rows (hashes, keys).

    aiosqlite logs ``executing <partial(sql, params)>``; SQLAlchemy's engine logger, when set to DEBUG,
    logs every fetched ``Row``. ``hide_parameters`` covers SQLAlchemy's parameters but not its rows.
    """

    _PREFIXES = ("executing ", "operation ", "Row ", "Col ")

    def filter(self, record: logging.LogRecord) -> bool:
        """Return False for the records that would print data."""
        return not (isinstance(record.msg, str) and record.msg.startswith(self._PREFIXES))


def _guard_library_logs() -> None:
    for name in ("aiosqlite", "sqlalchemy.engine.Engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropDataRecords) for f in logger.filters):
            logger.addFilter(_DropDataRecords())


def _sqlite_connect_hook(synchronous: str) -> Any:
    def connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # The driver's own transaction handling skips BEGIN before DDL; take it over (SQLAlchemy's
        # documented aiosqlite recipe) so a migration is one atomic transaction, as on PostgreSQL.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL below may wait for a lock
        cursor.execute("PRAGMA foreign_keys=ON")
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            # The switch needs an exclusive lock and ignores busy_timeout. When another connection holds
            # the lock it is switching this (persistent) mode itself; either journal mode is correct.
            if "locked" not in str(exc):
                raise
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")  # validated by AuthSettings
        cursor.close()

    return connect


IMMEDIATE = {"cube_sqlite_begin": "IMMEDIATE"}  # execution options: take SQLite's write lock at BEGIN


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE for writers that read first (migrations, key generation): a deferred
    # transaction that later upgrades to a write lock fails at once with SQLITE_BUSY instead of waiting.
    mode = conn.get_execution_options().get("cube_sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def create_engine(settings: AuthSettings) -> AsyncEngine:
    """Create the async engine for the configured database (SQLite file or PostgreSQL).

    ``hide_parameters`` keeps bound values (password hashes, PAT hashes, keys) out of error messages and
    SQLAlchemy's own logs; a filter drops the DEBUG records that would print rows or parameters.
    """
    _guard_library_logs()
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            # SQLite creates the file (and later its -wal and -shm, with the same mode) under the umask:
            # 0644 by default, readable by every local user. Create it 0600 in a 0700 directory first.
            create_private_file(Path(path))
        engine = create_async_engine(url, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_connect_hook(settings.sqlite_synchronous))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = {}
    if settings.database_schema:
        connect_args["server_settings"] = {"search_path": settings.database_schema}
    return create_async_engine(url, connect_args=connect_args, pool_pre_ping=True, hide_parameters=True)


@contextlib.contextmanager
def _conflict(message: str, code: str) -> Any:
    try:
        yield
    except IntegrityError:
        raise ConflictError(message, code=code) from None


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        role=UserRole(row["role"]),
        status=UserStatus(row["status"]),
        tags=tuple(row["tags"]),
        metadata=dict(row["metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        verified_at=row["verified_at"],
        password_hash=row["password_hash"],
    )


def _domain(row: RowMapping) -> Domain:
    return Domain(
        id=row["id"],
        name=row["name"],
        route=row["route"],
        status=DomainStatus(row["status"]),
        tags=tuple(row["tags"]),
        metadata=dict(row["metadata"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


def _scope(row: RowMapping) -> Scope:
    return Scope(
        id=row["id"],
        domain_id=row["domain_id"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        operation=row["operation"],
    )


def _pat(row: RowMapping, scopes: Sequence[Scope] = ()) -> PersonalAccessToken:
    return PersonalAccessToken(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        description=row["description"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        updated_at=row["updated_at"],
        last_used_at=row["last_used_at"],
        revoked=row["revoked"],
        revoked_at=row["revoked_at"],
        scopes=tuple(scopes),
    )


class Store:
    """Queries over one engine; each public method is one transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @contextlib.asynccontextmanager
    async def _tx(self, *, exclusive: bool = False) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if exclusive:
                conn = await conn.execution_options(**IMMEDIATE)
            async with conn.begin():
                yield conn

    async def close(self) -> None:
        """Dispose of the engine and its pooled connections."""
        await self.engine.dispose()

    # users

    async def insert_user(self, user: User) -> None:
        """Insert a user; a taken username or email raises ``auth.user_exists``."""
        async with self._tx() as conn:
            taken = await conn.execute(
                select(t.users.c.username, t.users.c.email).where(
                    or_(t.users.c.username == user.username, t.users.c.email == user.email)
                )
            )
            row = taken.first()
            if row is not None:
                what = "username" if row.username == user.username else "email"
                raise ConflictError(f"a user with this {what} already exists", code="auth.user_exists")
            with _conflict("a user with this username or email already exists", "auth.user_exists"):
                await conn.execute(
                    insert(t.users).values(
                        id=user.id,
                        username=user.username,
                        email=user.email,
                        first_name=user.first_name,
                        last_name=user.last_name,
                        password_hash=user.password_hash,
                        role=int(user.role),
                        status=user.status.value,
                        tags=list(user.tags),
                        metadata=user.metadata,
                        created_at=user.created_at,
                        updated_at=user.updated_at,
                        verified_at=user.verified_at,
                    )
                )

    async def get_user(self, user_id: str) -> User | None:
        """Return the user with ``user_id``, if any."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.id == user_id))).mappings().first()
        return None if row is None else _user(row)

    async def find_user(self, identity: str) -> User | None:
        """Return the user whose username, or else lower-cased email, is ``identity``."""
        column = t.users.c.email if "@" in identity else t.users.c.username
        value = identity.lower() if "@" in identity else identity
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(column == value))).mappings().first()
        return None if row is None else _user(row)

    async def existing_user_ids(self, user_ids: Iterable[str]) -> set[str]:
        """Return which of ``user_ids`` exist."""
        ids = list(user_ids)
        if not ids:
            return set()
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.users.c.id).where(t.users.c.id.in_(ids)))
        return {r.id for r in rows}

    async def set_password_hash(self, user_id: str, password_hash: str, now: datetime) -> None:
        """Replace a user's password hash (rehash on login after a parameter change)."""
        async with self._tx() as conn:
            await conn.execute(
                update(t.users)
                .where(t.users.c.id == user_id)
                .values(password_hash=password_hash, updated_at=now)
            )

    # domains and roles

    async def insert_domain(self, domain: Domain, admin_role: Role, creator_id: str) -> None:
        """Insert a domain with its built-in admin role, the creator as its member."""
        async with self._tx() as conn:
            taken = await conn.execute(select(t.domains.c.id).where(t.domains.c.route == domain.route))
            if taken.first() is not None:
                raise ConflictError("route not available", code="auth.route_not_available")
            with _conflict("route not available", "auth.route_not_available"):
                await conn.execute(
                    insert(t.domains).values(
                        id=domain.id,
                        name=domain.name,
                        route=domain.route,
                        status=domain.status.value,
                        tags=list(domain.tags),
                        metadata=domain.metadata,
                        created_by=domain.created_by,
                        created_at=domain.created_at,
                        updated_by=None,
                        updated_at=None,
                    )
                )
            await self._insert_role(conn, admin_role, [creator_id])

    async def _insert_role(self, conn: AsyncConnection, role: Role, members: Sequence[str]) -> None:
        with _conflict(f"role {role.name!r} already exists in this domain", "auth.role_exists"):
            await conn.execute(
                insert(t.domain_roles).values(
                    id=role.id,
                    domain_id=role.domain_id,
                    name=role.name,
                    created_by=role.created_by,
                    created_at=role.created_at,
                )
            )
        if role.actions:
            await conn.execute(
                insert(t.role_actions), [{"role_id": role.id, "action": a} for a in role.actions]
            )
        if members:
            await conn.execute(
                insert(t.role_members),
                [{"role_id": role.id, "user_id": m, "domain_id": role.domain_id} for m in members],
            )

    async def get_domain(self, domain_id: str) -> Domain | None:
        """Return the domain with ``domain_id``, if any."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(t.domains).where(t.domains.c.id == domain_id))).mappings().first()
            )
        return None if row is None else _domain(row)

    async def list_domains(
        self, *, member_id: str | None, status: DomainStatus | None, offset: int, limit: int
    ) -> tuple[int, list[Domain]]:
        """Return the total and one page of domains, only those ``member_id`` belongs to when set."""
        query = select(t.domains)
        if member_id is not None:
            member_of = select(t.role_members.c.domain_id).where(t.role_members.c.user_id == member_id)
            query = query.where(t.domains.c.id.in_(member_of))
        if status is not None:
            query = query.where(t.domains.c.status == status.value)
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
            rows = await conn.execute(
                query.order_by(t.domains.c.created_at, t.domains.c.id).offset(offset).limit(limit)
            )
            return total, [_domain(r) for r in rows.mappings()]

    async def update_domain(self, domain_id: str, values: dict[str, Any]) -> None:
        """Update a domain's columns (name, tags, metadata, status, updated_*)."""
        async with self._tx() as conn:
            await conn.execute(update(t.domains).where(t.domains.c.id == domain_id).values(**values))

    async def user_actions(self, domain_id: str, user_id: str) -> frozenset[str]:
        """Return the union of the actions of every role ``user_id`` holds in ``domain_id``."""
        query = (
            select(t.role_actions.c.action)
            .join(t.role_members, t.role_members.c.role_id == t.role_actions.c.role_id)
            .where(and_(t.role_members.c.domain_id == domain_id, t.role_members.c.user_id == user_id))
        )
        async with self.engine.connect() as conn:
            return frozenset(r.action for r in await conn.execute(query))

    async def _roles(self, conn: AsyncConnection, role_rows: Sequence[RowMapping]) -> list[Role]:
        ids = [r["id"] for r in role_rows]
        actions: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            rows = await conn.execute(
                select(t.role_actions)
                .where(t.role_actions.c.role_id.in_(ids))
                .order_by(t.role_actions.c.action)
            )
            for r in rows:
                actions[r.role_id].append(r.action)
        return [
            Role(
                id=r["id"],
                domain_id=r["domain_id"],
                name=r["name"],
                actions=tuple(actions[r["id"]]),
                created_by=r["created_by"],
                created_at=r["created_at"],
            )
            for r in role_rows
        ]

    async def insert_role(self, role: Role, members: Sequence[str]) -> None:
        """Insert a role with its actions and members."""
        async with self._tx() as conn:
            await self._insert_role(conn, role, members)

    async def get_role(self, domain_id: str, role_id: str) -> Role | None:
        """Return the role ``role_id`` of ``domain_id``, if any."""
        async with self.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(t.domain_roles).where(
                            and_(t.domain_roles.c.id == role_id, t.domain_roles.c.domain_id == domain_id)
                        )
                    )
                )
                .mappings()
                .all()
            )
            roles = await self._roles(conn, rows)
        return roles[0] if roles else None

    async def list_roles(self, domain_id: str, offset: int, limit: int) -> tuple[int, list[Role]]:
        """Return the total and one page of a domain's roles."""
        where = t.domain_roles.c.domain_id == domain_id
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(t.domain_roles).where(where))
            ).scalar_one()
            rows = (
                (
                    await conn.execute(
                        select(t.domain_roles)
                        .where(where)
                        .order_by(t.domain_roles.c.created_at, t.domain_roles.c.id)
                        .offset(offset)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
            return total, await self._roles(conn, rows)

    async def delete_role(self, role_id: str) -> None:
        """Delete a role with its actions and memberships."""
        async with self._tx() as conn:
            await conn.execute(delete(t.role_members).where(t.role_members.c.role_id == role_id))
            await conn.execute(delete(t.role_actions).where(t.role_actions.c.role_id == role_id))
            await conn.execute(delete(t.domain_roles).where(t.domain_roles.c.id == role_id))

    async def add_role_actions(self, role_id: str, actions: Sequence[str]) -> None:
        """Add actions to a role (already present ones are skipped)."""
        async with self._tx() as conn:
            have = {
                r.action
                for r in await conn.execute(
                    select(t.role_actions.c.action).where(t.role_actions.c.role_id == role_id)
                )
            }
            new = [a for a in actions if a not in have]
            if new:
                await conn.execute(insert(t.role_actions), [{"role_id": role_id, "action": a} for a in new])

    async def add_role_members(self, role: Role, user_ids: Sequence[str]) -> None:
        """Add users to a role (already present ones are skipped)."""
        async with self._tx() as conn:
            have = {
                r.user_id
                for r in await conn.execute(
                    select(t.role_members.c.user_id).where(t.role_members.c.role_id == role.id)
                )
            }
            new = [u for u in dict.fromkeys(user_ids) if u not in have]
            if new:
                await conn.execute(
                    insert(t.role_members),
                    [{"role_id": role.id, "user_id": u, "domain_id": role.domain_id} for u in new],
                )

    async def remove_role_members(self, role_id: str, user_ids: Sequence[str] | None) -> None:
        """Remove users from a role; ``None`` removes every member."""
        query = delete(t.role_members).where(t.role_members.c.role_id == role_id)
        if user_ids is not None:
            query = query.where(t.role_members.c.user_id.in_(list(user_ids)))
        async with self._tx() as conn:
            await conn.execute(query)

    async def count_role_members(self, role_id: str, excluding: Sequence[str] = ()) -> int:
        """Return how many members a role has, not counting ``excluding``."""
        query = select(func.count()).select_from(t.role_members).where(t.role_members.c.role_id == role_id)
        if excluding:
            query = query.where(t.role_members.c.user_id.not_in(list(excluding)))
        async with self.engine.connect() as conn:
            return (await conn.execute(query)).scalar_one()

    async def list_role_members(self, role_id: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """Return the total and one page of a role's member ids."""
        where = t.role_members.c.role_id == role_id
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(t.role_members).where(where))
            ).scalar_one()
            rows = await conn.execute(
                select(t.role_members.c.user_id)
                .where(where)
                .order_by(t.role_members.c.user_id)
                .offset(offset)
                .limit(limit)
            )
            return total, [r.user_id for r in rows]

    async def list_domain_members(
        self, domain_id: str, offset: int, limit: int
    ) -> tuple[int, list[tuple[str, list[Role]]]]:
        """Return the total and one page of a domain's members, each with the roles they hold."""
        where = t.role_members.c.domain_id == domain_id
        members = select(t.role_members.c.user_id).where(where).distinct()
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(members.subquery()))).scalar_one()
            page = [
                r.user_id
                for r in await conn.execute(
                    members.order_by(t.role_members.c.user_id).offset(offset).limit(limit)
                )
            ]
            if not page:
                return total, []
            links = (
                await conn.execute(
                    select(t.role_members.c.user_id, t.role_members.c.role_id).where(
                        and_(where, t.role_members.c.user_id.in_(page))
                    )
                )
            ).all()
            role_rows = (
                (
                    await conn.execute(
                        select(t.domain_roles).where(
                            t.domain_roles.c.id.in_({link.role_id for link in links})
                        )
                    )
                )
                .mappings()
                .all()
            )
            roles = {r.id: r for r in await self._roles(conn, role_rows)}
        by_user: dict[str, list[Role]] = {u: [] for u in page}
        for link in links:
            by_user[link.user_id].append(roles[link.role_id])
        return total, [(u, sorted(by_user[u], key=lambda r: r.name)) for u in page]

    async def remove_domain_members(self, domain_id: str, user_ids: Sequence[str]) -> None:
        """Remove users from every role of a domain."""
        async with self._tx() as conn:
            await conn.execute(
                delete(t.role_members).where(
                    and_(
                        t.role_members.c.domain_id == domain_id, t.role_members.c.user_id.in_(list(user_ids))
                    )
                )
            )

    # personal access tokens

    async def insert_pat(self, pat: PersonalAccessToken, secret_hash: str) -> None:
        """Insert a PAT (hash only) with its scopes."""
        async with self._tx() as conn:
            await conn.execute(
                insert(t.pats).values(
                    id=pat.id,
                    user_id=pat.user_id,
                    name=pat.name,
                    description=pat.description,
                    secret_hash=secret_hash,
                    issued_at=pat.issued_at,
                    expires_at=pat.expires_at,
                    updated_at=None,
                    last_used_at=None,
                    revoked=False,
                    revoked_at=None,
                )
            )
            await self._insert_scopes(conn, pat.id, pat.scopes)

    async def _insert_scopes(self, conn: AsyncConnection, pat_id: str, scopes: Sequence[Scope]) -> None:
        if not scopes:
            return
        with _conflict("scope already present on this token", "auth.scope_exists"):
            await conn.execute(
                insert(t.pat_scopes),
                [
                    {
                        "id": s.id,
                        "pat_id": pat_id,
                        "domain_id": s.domain_id,
                        "entity_type": s.entity_type,
                        "entity_id": s.entity_id,
                        "operation": s.operation,
                    }
                    for s in scopes
                ],
            )

    async def _scopes(self, conn: AsyncConnection, pat_ids: Sequence[str]) -> dict[str, list[Scope]]:
        result: dict[str, list[Scope]] = {i: [] for i in pat_ids}
        if pat_ids:
            rows = await conn.execute(
                select(t.pat_scopes)
                .where(t.pat_scopes.c.pat_id.in_(list(pat_ids)))
                .order_by(t.pat_scopes.c.id)
            )
            for r in rows.mappings():
                result[r["pat_id"]].append(_scope(r))
        return result

    async def get_pat(self, pat_id: str) -> tuple[PersonalAccessToken, str] | None:
        """Return a PAT with its scopes and stored secret hash, if any."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.pats).where(t.pats.c.id == pat_id))).mappings().first()
            if row is None:
                return None
            scopes = await self._scopes(conn, [pat_id])
        return _pat(row, scopes[pat_id]), row["secret_hash"]

    async def list_pats(self, user_id: str, offset: int, limit: int) -> tuple[int, list[PersonalAccessToken]]:
        """Return the total and one page of a user's PATs (with scopes, without hashes)."""
        where = t.pats.c.user_id == user_id
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(t.pats).where(where))).scalar_one()
            rows = (
                (
                    await conn.execute(
                        select(t.pats)
                        .where(where)
                        .order_by(t.pats.c.issued_at, t.pats.c.id)
                        .offset(offset)
                        .limit(limit)
                    )
                )
                .mappings()
                .all()
            )
            scopes = await self._scopes(conn, [r["id"] for r in rows])
        return total, [_pat(r, scopes[r["id"]]) for r in rows]

    async def revoke_pat(self, pat_id: str, now: datetime) -> None:
        """Mark a PAT revoked (idempotent: the first revocation time is kept)."""
        async with self._tx() as conn:
            await conn.execute(
                update(t.pats)
                .where(and_(t.pats.c.id == pat_id, t.pats.c.revoked.is_(False)))
                .values(revoked=True, revoked_at=now, updated_at=now)
            )

    async def delete_pat(self, pat_id: str) -> None:
        """Delete a PAT and its scopes."""
        async with self._tx() as conn:
            await conn.execute(delete(t.pat_scopes).where(t.pat_scopes.c.pat_id == pat_id))
            await conn.execute(delete(t.pats).where(t.pats.c.id == pat_id))

    async def touch_pat(self, pat: PersonalAccessToken, now: datetime) -> None:
        """Record use of a PAT, at most once per :data:`PAT_TOUCH_INTERVAL`."""
        if pat.last_used_at is not None and now - pat.last_used_at < PAT_TOUCH_INTERVAL:
            return
        async with self._tx() as conn:
            await conn.execute(update(t.pats).where(t.pats.c.id == pat.id).values(last_used_at=now))

    async def add_scopes(self, pat_id: str, scopes: Sequence[Scope], now: datetime) -> None:
        """Add scopes to a PAT; one already present raises ``auth.scope_exists``."""
        async with self._tx() as conn:
            await self._insert_scopes(conn, pat_id, scopes)
            await conn.execute(update(t.pats).where(t.pats.c.id == pat_id).values(updated_at=now))

    async def remove_scopes(self, pat_id: str, scope_ids: Sequence[str] | None, now: datetime) -> None:
        """Remove scopes (all of them when ``scope_ids`` is ``None``) from a PAT."""
        query = delete(t.pat_scopes).where(t.pat_scopes.c.pat_id == pat_id)
        if scope_ids is not None:
            query = query.where(t.pat_scopes.c.id.in_(list(scope_ids)))
        async with self._tx() as conn:
            await conn.execute(query)
            await conn.execute(update(t.pats).where(t.pats.c.id == pat_id).values(updated_at=now))

    # refresh sessions

    @staticmethod
    def _refresh_values(session: RefreshSession) -> dict[str, Any]:
        return {
            "id": session.id,
            "user_id": session.user_id,
            "description": session.description,
            "issued_at": session.issued_at,
            "expires_at": session.expires_at,
            "revoked_at": None,
            "family_id": session.family_id or session.id,
        }

    async def insert_refresh(self, session: RefreshSession) -> None:
        """Record a newly issued refresh token (a login: it starts a family unless one is given)."""
        async with self._tx() as conn:
            await conn.execute(insert(t.refresh_tokens).values(**self._refresh_values(session)))

    async def rotate_refresh(self, old_id: str, new: RefreshSession, now: datetime) -> bool:
        """Revoke ``old_id`` and record ``new`` atomically; return False if ``old_id`` was not active."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.refresh_tokens)
                .where(and_(t.refresh_tokens.c.id == old_id, t.refresh_tokens.c.revoked_at.is_(None)))
                .values(revoked_at=now)
            )
            if result.rowcount != 1:
                return False
            await conn.execute(insert(t.refresh_tokens).values(**self._refresh_values(new)))
        return True

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every active session of a token family; return how many were still active."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.refresh_tokens)
                .where(
                    and_(t.refresh_tokens.c.family_id == family_id, t.refresh_tokens.c.revoked_at.is_(None))
                )
                .values(revoked_at=now)
            )
        return int(result.rowcount)

    async def get_refresh(self, jti: str) -> tuple[RefreshSession, datetime | None] | None:
        """Return a refresh session and its revocation time, if the jti is known."""
        async with self.engine.connect() as conn:
            row = (
                (await conn.execute(select(t.refresh_tokens).where(t.refresh_tokens.c.id == jti)))
                .mappings()
                .first()
            )
        if row is None:
            return None
        session = RefreshSession(
            id=row["id"],
            user_id=row["user_id"],
            description=row["description"],
            issued_at=row["issued_at"],
            expires_at=row["expires_at"],
            family_id=row["family_id"],
        )
        return session, row["revoked_at"]

    async def access_subject(self, user_id: str, family_id: str) -> tuple[User | None, bool]:
        """Return the user an access token names and whether its family (``sid``) still has a live session.

        One query: the user row plus an indexed ``EXISTS`` on the family. A family is live while one of
        its sessions is unrevoked; an empty ``family_id`` (a token without ``sid``) counts as live.
        """
        live: Any = sql_true()
        if family_id:
            live = (
                select(t.refresh_tokens.c.id)
                .where(
                    and_(t.refresh_tokens.c.family_id == family_id, t.refresh_tokens.c.revoked_at.is_(None))
                )
                .exists()
            )
        query = select(t.users, live.label("family_live")).where(t.users.c.id == user_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None, False
        return _user(row), bool(row["family_live"])

    async def revoke_refresh(self, jti: str, user_id: str, now: datetime) -> bool:
        """Revoke a user's refresh token; return whether an active one was found."""
        async with self._tx() as conn:
            result = await conn.execute(
                update(t.refresh_tokens)
                .where(
                    and_(
                        t.refresh_tokens.c.id == jti,
                        t.refresh_tokens.c.user_id == user_id,
                        t.refresh_tokens.c.revoked_at.is_(None),
                    )
                )
                .values(revoked_at=now)
            )
        return result.rowcount == 1

    async def list_refresh(self, user_id: str, now: datetime) -> list[RefreshSession]:
        """Return a user's active (unrevoked, unexpired) refresh sessions."""
        query = (
            select(t.refresh_tokens)
            .where(
                and_(
                    t.refresh_tokens.c.user_id == user_id,
                    t.refresh_tokens.c.revoked_at.is_(None),
                    t.refresh_tokens.c.expires_at > now,
                )
            )
            .order_by(t.refresh_tokens.c.issued_at)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            RefreshSession(
                id=r["id"],
                user_id=r["user_id"],
                description=r["description"],
                issued_at=r["issued_at"],
                expires_at=r["expires_at"],
                family_id=r["family_id"],
            )
            for r in rows
        ]

    # signing keys

    async def load_keys(self) -> list[keymod.SigningKey]:
        """Return the public halves of the active and retiring signing keys (private keys are in files)."""
        columns = (t.signing_keys.c.kid, t.signing_keys.c.state, t.signing_keys.c.public_key)
        query = select(*columns).where(t.signing_keys.c.state.in_([keymod.ACTIVE, keymod.RETIRING]))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [keymod.public_signing_key(r.kid, r.state, r.public_key) for r in rows]

    async def _lock_keys(self, conn: AsyncConnection) -> None:
        # SQLite: the IMMEDIATE transaction is the lock; PostgreSQL: an advisory lock.
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_KEY_LOCK})

    async def ensure_active_key(self, now: datetime, files: KeyDirectory) -> keymod.SigningKey | None:
        """Make an active signing key unless one exists (first start, or after migration 2); return it.

        Under the key lock, so replicas starting together make one key: the file is written before the
        row that names it is committed, so whoever sees the row finds the file (in a shared directory).
        """
        async with self._tx(exclusive=True) as conn:
            await self._lock_keys(conn)
            active = await conn.execute(
                select(t.signing_keys.c.kid).where(t.signing_keys.c.state == keymod.ACTIVE)
            )
            if active.first() is not None:
                return None
            key = keymod.generate_signing_key()
            await self._insert_key(conn, key, now, files)
        return key

    async def _insert_key(
        self, conn: AsyncConnection, key: keymod.SigningKey, now: datetime, files: KeyDirectory
    ) -> None:
        files.write(key)
        try:
            await conn.execute(
                insert(t.signing_keys).values(
                    kid=key.kid,
                    algorithm=keymod.ALGORITHM,
                    private_key=None,  # never stored: see keyfiles.py
                    public_key=key.x,
                    state=key.state,
                    created_at=now,
                    retired_at=None,
                )
            )
        except BaseException:
            files.remove(key.kid)
            raise

    async def rotate_keys(self, new_key: keymod.SigningKey, now: datetime, files: KeyDirectory) -> None:
        """Make ``new_key`` active (its file written first), the active key retiring, older ones retired."""
        async with self._tx(exclusive=True) as conn:
            await self._lock_keys(conn)
            await conn.execute(
                update(t.signing_keys)
                .where(t.signing_keys.c.state == keymod.RETIRING)
                .values(state=keymod.RETIRED, retired_at=now)
            )
            await conn.execute(
                update(t.signing_keys)
                .where(t.signing_keys.c.state == keymod.ACTIVE)
                .values(state=keymod.RETIRING)
            )
            await self._insert_key(conn, new_key, now, files)
