"""Helpers for the proxy tests: a hand-moved clock, real uvicorn servers on port 0, an auth stack.

The auth stack is the real SuperMQ-compatible auth service on SQLite: its HTTP API served by uvicorn
and ``auth.v1.AuthService`` over gRPC, both on 127.0.0.1 port 0, with no endpoint of its own. The
proxy asks it as a deployed proxy does (:func:`stack_auth_client`: gRPC, JWKS over HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from cube_stack.auth import AuthService, AuthSettings, create_auth_app
from cube_stack.auth.grpc import GrpcAuthClient, GrpcAuthServer, serve_grpc
from cube_stack.net import bind_tcp
from cube_stack.proxy import AuthClient, HttpAuthClient, ProxyServer, ProxySettings
from cube_stack.proxy.authclient import GrpcProxyAuthClient


@dataclass
class Proxy:
    """A running proxy and an httpx client pointed at it."""

    url: str
    server: ProxyServer
    settings: ProxySettings
    client: httpx.AsyncClient
    auth: AuthClient

    def path(self, domain: str, suffix: str) -> str:
        return f"/{domain}{suffix}"


MakeProxy = Callable[..., contextlib.AbstractAsyncContextManager[Proxy]]  # the make_proxy fixture


ADMIN = {"username": "admin", "email": "admin@example.com", "password": "admin-password-1"}
LLM_ACTIONS = ["llm_chat_completions", "llm_completions", "llm_embeddings", "llm_read"]


class ManualClock:
    """Seconds since the epoch, moved by hand (starts at the real time so real JWTs are valid)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Server:
    """A uvicorn server for any ASGI app on 127.0.0.1, port 0, running as a task of the test's loop."""

    def __init__(self, app: ASGIApp, *, config: uvicorn.Config | None = None) -> None:
        self.config = config or uvicorn.Config(
            app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(self.config)
        self.sock = bind_tcp("127.0.0.1", 0)  # connections queue here until uvicorn accepts
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Server:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
            self.task = None
        self.sock.close()


@dataclass
class Account:
    id: str
    username: str
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)


async def login(client: httpx.AsyncClient, secrets: set[str], username: str, password: str) -> Account:
    """Log in and return the account; its tokens join ``secrets``."""
    response = await client.post("/users/tokens/issue", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    data = response.json()
    secrets |= {data["access_token"], data["refresh_token"]}
    profile = await client.get("/users/profile", headers=bearer(data["access_token"]))
    return Account(profile.json()["id"], username, data["access_token"], data["refresh_token"])


async def make_user(client: httpx.AsyncClient, secrets: set[str], admin: Account, username: str) -> Account:
    """Create a user as the platform admin and log them in."""
    body = {
        "first_name": username.capitalize(),
        "last_name": "Tester",
        "email": f"{username}@example.com",
        "credentials": {"username": username, "secret": f"{username}-password"},
    }
    response = await client.post("/users", json=body, headers=bearer(admin.access_token))
    assert response.status_code == 201, response.text
    return await login(client, secrets, username, f"{username}-password")


@dataclass
class AuthStack:
    """The running auth service and the people and domains the tests use.

    Methods open their own client, so they work from any event loop (the session's stack runs in a
    thread of its own).
    """

    url: str
    service: AuthService
    server: Server
    grpc_server: GrpcAuthServer  # its auth.v1.AuthService
    admin: Account
    alice: Account  # owner (admin role) of `domain`
    bob: Account  # member of `domain` through a role holding the LLM actions
    carol: Account  # member of no domain
    domain: str  # acme's id
    secrets: set[str] = field(repr=False)  # every token handed out, for the log checks

    @property
    def grpc_target(self) -> str:
        """Return the ``host:port`` of its ``auth.v1.AuthService``."""
        return self.grpc_server.target

    async def _request(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.request(method, path, json=body, headers=bearer(token))

    async def make_pat(
        self, account: Account, scopes: list[dict[str, str]], name: str = "editor"
    ) -> dict[str, Any]:
        payload = {"name": name, "duration": "720h", "scopes": scopes}
        response = await self._request("POST", "/pats", account.access_token, payload)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.secrets.add(created["secret"])
        return created

    async def revoke_pat(self, account: Account, pat_id: str) -> None:
        response = await self._request("PATCH", f"/pats/{pat_id}/secret/revoke", account.access_token)
        assert response.status_code == 204, response.text

    async def make_domain(self, route: str, members: list[Account]) -> str:
        """Create a domain owned by alice whose LLM role holds ``members``; return its id."""
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await _make_domain(client, self.alice, route, members)

    async def disable_domain(self, domain_id: str) -> None:
        response = await self._request("POST", f"/domains/{domain_id}/disable", self.alice.access_token)
        assert response.status_code == 200, response.text


async def _make_domain(client: httpx.AsyncClient, owner: Account, route: str, members: list[Account]) -> str:
    created = await client.post(
        "/domains", json={"name": route.title(), "route": route}, headers=bearer(owner.access_token)
    )
    assert created.status_code == 201, created.text
    domain: str = created.json()["id"]
    role = {
        "role_name": "coder",
        "optional_actions": LLM_ACTIONS,
        "optional_members": [m.id for m in members],
    }
    made = await client.post(f"/domains/{domain}/roles", json=role, headers=bearer(owner.access_token))
    assert made.status_code == 201, made.text
    return domain


def stack_auth_client(stack: AuthStack, *, timeout: float = 5.0) -> GrpcProxyAuthClient:
    """Return the proxy's auth client for ``stack``, as ``python -m cube_stack.proxy`` builds it."""
    return GrpcProxyAuthClient(
        GrpcAuthClient(stack.grpc_target, timeout=timeout), jwks=HttpAuthClient(stack.url, timeout=timeout)
    )


def llm_scope(domain_id: str, operation: str) -> dict[str, str]:
    return {"domain_id": domain_id, "entity_type": "llm", "operation": operation}


@contextlib.asynccontextmanager
async def auth_stack(tmp_path: Path, secrets: set[str]) -> AsyncIterator[AuthStack]:
    """Open the auth service on SQLite, serve its HTTP API and gRPC, create accounts and a domain."""
    settings = AuthSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}",
        data_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        sqlite_synchronous="off",
        admin_username=ADMIN["username"],
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
    )
    service = await AuthService.open(settings)
    server = Server(create_auth_app(settings, service=service)).start()
    grpc_server: GrpcAuthServer = await serve_grpc(service)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            admin = await login(client, secrets, ADMIN["username"], ADMIN["password"])
            alice, bob, carol = [
                await make_user(client, secrets, admin, n) for n in ("alice", "bob", "carol")
            ]
            domain = await _make_domain(client, alice, "acme", [bob])
            yield AuthStack(
                server.url, service, server, grpc_server, admin, alice, bob, carol, domain, secrets
            )
    finally:
        await grpc_server.stop(None)
        await server.stop()
        await service.close()


class AuthStackThread:
    """An :func:`auth_stack` served from a thread with its own event loop, shared by many tests."""

    def __init__(self, tmp_path: Path, secrets: set[str]) -> None:
        self._tmp_path = tmp_path
        self._secrets = secrets
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.stack: AuthStack | None = None
        self._thread = threading.Thread(target=self._run, name="proxy-test-auth", daemon=True)

    def start(self) -> AuthStack:
        self._thread.start()
        if not self._ready.wait(30) or self.stack is None:
            raise RuntimeError("the auth stack did not start") from self._error
        return self.stack

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with auth_stack(self._tmp_path, self._secrets) as stack:
                    self.stack = stack
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:
                self._error = exc
                raise
            finally:
                self._ready.set()

        asyncio.run(main())
