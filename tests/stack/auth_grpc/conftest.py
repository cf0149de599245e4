"""Fixtures for the auth gRPC tests: a real AuthService (SQLite, or PostgreSQL where asked) behind a real
``grpc.aio`` server on 127.0.0.1 port 0, and a client on a channel to it.

PostgreSQL: one uniquely named database per session in the local server (trust auth), one migrated
schema emptied after each test; tests skip only when the server is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cube_auth_grpc_testkit import ADMIN, FakeClock, World, make_world

from cube_stack.auth import AuthService, AuthSettings
from cube_stack.auth.grpc import GrpcAuthClient, GrpcAuthServer, Stubs, ensure_generated, serve_grpc
from cube_stack.auth.migrations import migrate
from cube_stack.auth.schema import metadata
from cube_stack.auth.store import create_engine

PG_HOST = os.environ.get("CUBE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CUBE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CUBE_TEST_PG_USER", "postgres")
PG_SCHEMA = "grpc"


def _pg_url(database: str) -> str:
    return f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def _pg_connect(database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database=database, timeout=5)


@pytest.fixture(scope="session")
def stubs() -> Stubs:
    return ensure_generated()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A migrated database for the session, or None when PostgreSQL is unreachable."""
    name = f"cube_auth_grpc_test_{uuid.uuid4().hex[:12]}"

    async def create() -> bool:
        try:
            conn = await _pg_connect()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await _pg_connect(name)
        try:
            await conn.execute(f'CREATE SCHEMA "{PG_SCHEMA}"')
        finally:
            await conn.close()
        engine = create_engine(AuthSettings(database_url=_pg_url(name), database_schema=PG_SCHEMA))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        return True

    async def drop() -> None:
        conn = await _pg_connect()
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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "auth.db"

    async def prepare() -> None:
        engine = create_engine(AuthSettings(database_url=f"sqlite+aiosqlite:///{path}"))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    return path


@pytest.fixture
def backend() -> str:
    """Override by parametrising ``backend`` (``"postgresql"``) in a test."""
    return "sqlite"


@pytest.fixture
async def database(
    backend: str, tmp_path: Path, sqlite_template: Path, pg_database: str | None
) -> AsyncIterator[tuple[str, str | None]]:
    """``(url, schema)`` of an empty migrated database for one test."""
    if backend == "sqlite":
        shutil.copyfile(sqlite_template, tmp_path / "auth.db")
        yield f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}", None
        return
    if pg_database is None:
        pytest.skip(f"PostgreSQL is unreachable at {PG_HOST}:{PG_PORT}")
    try:
        yield _pg_url(pg_database), PG_SCHEMA
    finally:
        conn = await _pg_connect(pg_database)
        try:
            async with conn.transaction():
                for table in reversed(metadata.sorted_tables):
                    if table.name != "schema_version":
                        await conn.execute(f'DELETE FROM "{PG_SCHEMA}"."{table.name}"')
        finally:
            await conn.close()


@pytest.fixture
def settings(database: tuple[str, str | None], tmp_path: Path) -> AuthSettings:
    values: dict[str, Any] = {
        "database_url": database[0],
        "database_schema": database[1],
        "data_dir": tmp_path,
        "argon2_time_cost": 1,  # cheap argon2id for tests only
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        "sqlite_synchronous": "off",
        "admin_username": ADMIN["username"],
        "admin_email": ADMIN["email"],
        "admin_password": ADMIN["password"],
    }
    return AuthSettings(**values)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(settings: AuthSettings, clock: FakeClock) -> AsyncIterator[AuthService]:
    svc = await AuthService.open(settings, clock=clock)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def world(service: AuthService) -> World:
    return await make_world(service)


@pytest.fixture
async def server(service: AuthService, stubs: Stubs) -> AsyncIterator[GrpcAuthServer]:
    started = await serve_grpc(service, stubs=stubs)
    try:
        yield started
    finally:
        await started.stop(None)


@pytest.fixture
async def client(server: GrpcAuthServer, stubs: Stubs) -> AsyncIterator[GrpcAuthClient]:
    async with GrpcAuthClient(server.target, stubs=stubs, timeout=5.0) as c:
        yield c
