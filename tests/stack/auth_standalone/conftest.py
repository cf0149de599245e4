"""Fixtures for the standalone auth tests: a fresh database per test (PostgreSQL or SQLite), key files.

PostgreSQL: a uniquely named database on the local server (127.0.0.1:5432, user postgres, trust auth)
for each test, dropped after it; the tests skip only when the server is unreachable.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from standalone_kit import cube_stack_json

PG_HOST = os.environ.get("CUBE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CUBE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CUBE_TEST_PG_USER", "postgres")


async def _pg(sql: str) -> bool:
    try:
        conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
    return True


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Create an empty, uniquely named PostgreSQL database; yield its plain ``postgresql://`` URL."""
    name = f"cube_auth_standalone_{uuid.uuid4().hex[:12]}"
    if not asyncio.run(_pg(f'CREATE DATABASE "{name}"')):
        pytest.skip(f"no PostgreSQL at {PG_HOST}:{PG_PORT}")
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind, as an operator writes its URL."""
    if request.param == "sqlite":
        return str(tmp_path / "db" / "auth.db")  # a bare file path
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def agent_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SIMULATED agent's state, shared so its RSA-4096 root is made once per session."""
    return tmp_path_factory.mktemp("agent")


@pytest.fixture
def make_key(tmp_path: Path) -> Callable[[str], tuple[Path, str]]:
    """Return ``make_key(name) -> (path, kid)``: a new signing key made by `cube-stack auth keygen`."""
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)

    def make(name: str) -> tuple[Path, str]:
        path = keys / f"{name}.pem"
        made = cube_stack_json("auth", "keygen", str(path))
        return path, str(made["kid"])

    return make
