"""The migration runner on a brand-new SQLite file and a brand-new PostgreSQL schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from cube_stack.auth import AuthError, AuthService, AuthSettings
from cube_stack.auth.migrations import LATEST_VERSION, current_version, migrate
from cube_stack.auth.models import utc_now
from cube_stack.auth.schema import metadata, schema_version
from cube_stack.auth.store import create_engine


def _settings(fresh_database, tmp_path: Path) -> AuthSettings:  # type: ignore[no-untyped-def]
    return AuthSettings(
        database_url=fresh_database.url,
        database_schema=fresh_database.schema,
        data_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        sqlite_synchronous="off",
    )


@pytest.fixture
async def engine(fresh_database, tmp_path: Path) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    eng = create_engine(_settings(fresh_database, tmp_path))
    try:
        yield eng
    finally:
        await eng.dispose()


async def test_migrates_once(engine: AsyncEngine) -> None:
    assert await current_version(engine) == 0
    assert await migrate(engine) == [1, 2, 3]
    assert await current_version(engine) == LATEST_VERSION
    assert await migrate(engine) == []


async def test_migrated_schema_matches_metadata(engine: AsyncEngine) -> None:
    await migrate(engine)

    def reflect(conn):  # type: ignore[no-untyped-def]
        inspector = inspect(conn)
        return {
            name: {c["name"] for c in inspector.get_columns(name)} for name in inspector.get_table_names()
        }

    async with engine.connect() as conn:
        reflected = await conn.run_sync(reflect)
    expected = {table.name: {c.name for c in table.columns} for table in metadata.sorted_tables}
    assert reflected == expected


async def test_concurrent_starts_migrate_once(fresh_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(fresh_database, tmp_path)
    engines = [create_engine(settings) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(e) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert sorted(results) == [[], [], [1, 2, 3]]


async def test_concurrent_first_starts_make_one_key(fresh_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = _settings(fresh_database, tmp_path)
    services = await asyncio.gather(*(AuthService.open(settings) for _ in range(3)))
    try:
        kids = {(await s.keyring()).active.kid for s in services}
        assert len(kids) == 1
    finally:
        for s in services:
            await s.close()


async def test_refuses_newer_schema(engine: AsyncEngine, fresh_database, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(
            insert(schema_version).values(version=99, description="future", applied_at=utc_now())
        )
    with pytest.raises(AuthError) as info:
        await migrate(engine)
    assert info.value.code == "auth.schema_too_new"
    with pytest.raises(AuthError):
        await AuthService.open(_settings(fresh_database, tmp_path))
