"""Helpers shared by the auth tests: a hand-moved clock, accounts, requests and error assertions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from cube_stack.net import bind_tcp

ADMIN = {"username": "admin", "email": "admin@example.com", "password": "admin-password-1"}
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, str]:
    response = await client.post("/users/tokens/issue", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def user_body(username: str, **extra: Any) -> dict[str, Any]:
    body = {
        "first_name": username.capitalize(),
        "last_name": "Tester",
        "email": f"{username}@example.com",
        "credentials": {"username": username, "secret": f"{username}-password"},
    }
    body.update(extra)
    return body


@dataclass
class Account:
    id: str
    username: str
    password: str
    access_token: str
    refresh_token: str


async def make_user(client: httpx.AsyncClient, admin_token: str, username: str) -> Account:
    response = await client.post("/users", json=user_body(username), headers=bearer(admin_token))
    assert response.status_code == 201, response.text
    tokens = await login(client, username, f"{username}-password")
    return Account(
        response.json()["id"],
        username,
        f"{username}-password",
        tokens["access_token"],
        tokens["refresh_token"],
    )


async def make_domain(client: httpx.AsyncClient, token: str, route: str) -> dict[str, Any]:
    response = await client.post(
        "/domains", json={"name": route.title(), "route": route}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


# Input-validation tables exercise parsing, not storage: run them on SQLite only (overrides the
# parametrised `backend` fixture by direct parametrisation).
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with a real uvicorn on 127.0.0.1, port 0, in this loop; yield its base URL."""
    sock = bind_tcp("127.0.0.1", 0)  # listening now: connections queue until uvicorn accepts them
    config = uvicorn.Config(
        app, lifespan="on", access_log=False, log_config=None, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()
