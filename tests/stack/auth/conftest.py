"""Fixtures for the auth service tests: backends (SQLite file, PostgreSQL schema), clock, app, client.

PostgreSQL: one uniquely named database per session in the local server, dropped at the end. Inside
it one schema is migrated once and emptied after every test (PostgreSQL DDL costs ~0.15 s per run);
migration tests get a brand-new schema each. Tests skip only when the server is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cube_auth_testkit import ADMIN, Account, FakeClock, login, make_user

from cube_stack.auth import AuthService, AuthSettings, create_auth_app
from cube_stack.auth.migrations import migrate
from cube_stack.auth.schema import metadata
from cube_stack.auth.store import create_engine

PG_HOST = os.environ.get("CUBE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CUBE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CUBE_TEST_PG_USER", "postgres")


async def _pg_admin(database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=5)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """Create a uniquely named database for the session; None when PostgreSQL is unreachable."""
    name = f"cube_auth_test_{uuid.uuid4().hex[:12]}"

    async def create() -> bool:
        try:
            conn = await _pg_admin()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            # Throw-away data: skip the WAL flush on commit (tests only; the code sets nothing).
            await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        finally:
            await conn.close()
        return True

    async def drop() -> None:
        conn = await _pg_admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    if not asyncio.run(create()):
        yield None
        return
    try:
        yield name
    finally:
        asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@dataclass
class Database:
    url: str
    schema: str | None


def _pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


@pytest.fixture(scope="session")
def pg_schema(pg_database: str | None) -> str | None:
    """A schema migrated once per session; tests empty its tables afterwards (PostgreSQL DDL is slow)."""
    if pg_database is None:
        return None
    schema = "shared"

    async def prepare() -> None:
        conn = await _pg_admin(pg_database)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()
        engine = create_engine(AuthSettings(database_url=_pg_url(pg_database), database_schema=schema))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    return schema


async def _empty_tables(database: str, schema: str) -> None:
    conn = await _pg_admin(database)
    try:
        async with conn.transaction():
            for table in reversed(metadata.sorted_tables):
                if table.name != "schema_version":
                    await conn.execute(f'DELETE FROM "{schema}"."{table.name}"')
    finally:
        await conn.close()


@pytest.fixture
async def fresh_database(backend: str, tmp_path: Path, pg_database: str | None) -> AsyncIterator[Database]:
    """A database with no tables at all: a new SQLite file or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", None)
        return
    if pg_database is None:
        pytest.skip(f"PostgreSQL is unreachable at {PG_HOST}:{PG_PORT}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await _pg_admin(pg_database)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
    try:
        yield Database(_pg_url(pg_database), schema)
    finally:
        conn = await _pg_admin(pg_database)
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; each test gets a copy (cheaper than running the DDL)."""
    path = tmp_path_factory.mktemp("template") / "auth.db"

    async def prepare() -> None:
        engine = create_engine(AuthSettings(database_url=f"sqlite+aiosqlite:///{path}"))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()  # the last close checkpoints the WAL into the main file

    asyncio.run(prepare())
    return path


@pytest.fixture
async def database(
    backend: str, tmp_path: Path, pg_database: str | None, pg_schema: str | None, sqlite_template: Path
) -> AsyncIterator[Database]:
    """An empty, migrated database for one test: a SQLite file or the shared PostgreSQL schema."""
    if backend == "sqlite":
        shutil.copyfile(sqlite_template, tmp_path / "auth.db")
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}", None)
        return
    if pg_database is None or pg_schema is None:
        pytest.skip(f"PostgreSQL is unreachable at {PG_HOST}:{PG_PORT}")
    try:
        yield Database(_pg_url(pg_database), pg_schema)
    finally:
        await _empty_tables(pg_database, pg_schema)


def make_settings(database: Database, tmp_path: Path, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "database_url": database.url,
        "database_schema": database.schema,
        "data_dir": tmp_path,
        # Cheap argon2id for tests only; production defaults are OWASP's (checked in test_settings.py).
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        "sqlite_synchronous": "off",  # throw-away files; production keeps "full"
        "admin_username": ADMIN["username"],
        "admin_email": ADMIN["email"],
        "admin_password": ADMIN["password"],
    }
    values.update(overrides)
    return AuthSettings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or with indirect parametrisation) to change settings."""
    return {}


@pytest.fixture
def settings(database: Database, tmp_path: Path, settings_overrides: dict[str, Any]) -> AuthSettings:
    return make_settings(database, tmp_path, **settings_overrides)


@pytest.fixture
async def service(settings: AuthSettings, clock: FakeClock) -> AsyncIterator[AuthService]:
    svc = await AuthService.open(settings, clock=clock)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def client(settings: AuthSettings, service: AuthService) -> AsyncIterator[httpx.AsyncClient]:
    app = create_auth_app(settings, service=service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://auth.test") as c:
        yield c


@pytest.fixture
async def admin_token(client: httpx.AsyncClient) -> str:
    return (await login(client, ADMIN["username"], ADMIN["password"]))["access_token"]


@pytest.fixture
async def alice(client: httpx.AsyncClient, admin_token: str) -> Account:
    return await make_user(client, admin_token, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, admin_token: str) -> Account:
    return await make_user(client, admin_token, "bob")
