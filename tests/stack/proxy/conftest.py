"""Fixtures for the proxy tests: the auth stack, a manual clock and a proxy factory on real servers.

Every proxy runs under :class:`ProxyServer` (uvicorn) on 127.0.0.1 port 0, in front of the session's
SCRIPTED BACKEND as its runtime and a per-test auth service on SQLite. Every test also checks that no
token handed out during it appears in any log record (all loggers at DEBUG).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cube_proxy_testkit import AuthStack, AuthStackThread, MakeProxy, ManualClock, Proxy, auth_stack

from cube_stack.proxy import (
    AttestationAgent,
    AuthClient,
    ProxyServer,
    ProxySettings,
    create_proxy_app,
)
from cube_stack.proxy.standalone import build_auth
from cube_stack.tls_identity import TlsIdentity
from tests.support.fixtures import SCRIPTED_TOKEN
from tests.support.scripted_backend import DEFAULT_DOMAIN, ScriptedBackend


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time())


@pytest.fixture(scope="session")
def seen_secrets() -> set[str]:
    """Every token handed out in this session (the auth stacks add to it)."""
    return {SCRIPTED_TOKEN}


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory, seen_secrets: set[str]) -> Iterator[AuthStack]:
    """The session's auth stack, served from its own thread; tests must not change shared state."""
    runner = AuthStackThread(tmp_path_factory.mktemp("auth"), seen_secrets)
    try:
        yield runner.start()
    finally:
        runner.stop()


@pytest.fixture
def stack(shared_stack: AuthStack) -> AuthStack:
    return shared_stack


@pytest.fixture
async def own_stack(tmp_path: Path, seen_secrets: set[str]) -> AsyncIterator[AuthStack]:
    """A private auth stack in the test's own loop (for tests that stop it or use its service)."""
    async with auth_stack(tmp_path, seen_secrets) as running:
        yield running


def runtime_settings(backend: ScriptedBackend) -> dict[str, Any]:
    """Return settings that make the scripted backend the proxy's runtime."""
    return {
        "ollama_url": f"{backend.url}/{DEFAULT_DOMAIN}",
        "runtime_api_key": SCRIPTED_TOKEN,
    }


@pytest.fixture
def make_proxy(stack: AuthStack, scripted_backend: ScriptedBackend, clock: ManualClock) -> MakeProxy:
    """Return ``make_proxy(agent=None, auth=None, identity=None, **settings)``: a proxy being served.

    ``identity`` is the TLS key pair the proxy serves with and binds into attestation (made when not
    given); a real :class:`~cube_stack.agent.Agent` must be made for that key.
    """

    @contextlib.asynccontextmanager
    async def start(
        *,
        agent: AttestationAgent | None = None,
        auth: AuthClient | None = None,
        identity: TlsIdentity | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Proxy]:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "tls": False,
            "auth_url": stack.url,
            "auth_grpc": stack.grpc_target,
            "shutdown_grace": 1.0,
            **runtime_settings(scripted_backend),
        }
        values.update(overrides)
        settings = ProxySettings(**values)
        client_auth = auth or build_auth(settings)  # as python -m cube_stack.proxy: gRPC, JWKS over HTTP
        app = create_proxy_app(settings, auth=client_auth, agent=agent, clock=clock, identity=identity)
        server = ProxyServer(app, settings)
        sock = server.bind()
        task = asyncio.create_task(server.serve([sock]))
        try:
            verify: Any = True
            if settings.tls:
                verify = ssl.create_default_context(cadata=server.cert_pem.decode("ascii"))
            async with httpx.AsyncClient(base_url=server.url, verify=verify, timeout=10) as client:
                yield Proxy(server.url, server, settings, client, client_auth)
        finally:
            server.stop()
            await task
            sock.close()
            if auth is None:
                await client_auth.aclose()

    return start


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog: pytest.LogCaptureFixture, seen_secrets: set[str]) -> Iterator[None]:
    """Fail the test if any token handed out during it shows up in a log record (setup to teardown)."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.get_records("setup") + caplog.get_records("call") + caplog.get_records("teardown"):
        text = record.getMessage() + " " + repr(record.__dict__)
        leaked = [s[:12] for s in seen_secrets if s in text]
        assert not leaked, f"a token starting {leaked} was logged by {record.name}: {record.msg!r}"
