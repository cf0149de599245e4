"""The real cube-lsp process against the attested test server: cube/status shows the attestation state."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import trustme
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.cube.attested._server import COMPLETION, DOMAIN, TOKEN, AttestedServer
from tests.e2e.conftest import INLINE_CAPABILITIES, SERVER_COMMAND, Session

pytestmark = pytest.mark.e2e

URI = "file:///work/demo/secret.py"
SECRET = "def top_secret_status_4b2e(z):"


def field(value: Any, name: str) -> Any:
    return value[name] if isinstance(value, dict) else getattr(value, name)


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[tuple[LanguageClient, Any]]]]:
    clients: list[LanguageClient] = []

    async def launch(settings: dict[str, Any]) -> tuple[LanguageClient, Any]:
        client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
        clients.append(client)
        status = asyncio.ensure_future(client.wait_for_notification("cube/status"))
        await client.initialize_session(
            types.InitializeParams(capabilities=INLINE_CAPABILITIES, initialization_options=settings)
        )
        return client, await asyncio.wait_for(status, 10)

    yield launch
    for client in clients:
        if client.error is None:
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()


def settings_for(server: AttestedServer, policy: Path, ca_bundle: Path) -> dict[str, Any]:
    return {
        "endpoint": server.url,
        "domain": DOMAIN,
        "token": TOKEN,
        "tls": {"caBundle": str(ca_bundle)},
        "attestation": {"mode": "simulated", "policy": str(policy)},
    }


async def complete(client: LanguageClient) -> tuple[Any, Any]:
    session = Session(client)
    session.open(URI, SECRET + "\n    return \n")
    status = asyncio.ensure_future(client.wait_for_notification("cube/status"))
    result = await session.inline(URI, 1, len("    return "))
    return result, await asyncio.wait_for(status, 10)


async def test_status_shows_simulated_after_the_first_completion(
    start, server, policy_file, ca: tuple[trustme.CA, Path]
) -> None:
    client, first = await start(settings_for(server, policy_file, ca[1]))
    assert field(field(first, "attestation"), "state") == "unattested"
    result, status = await complete(client)
    assert result.items[0].insert_text.startswith("".join(COMPLETION))
    attestation = field(status, "attestation")
    assert field(attestation, "state") == "simulated"
    assert field(attestation, "mode") == "simulated"
    assert field(attestation, "product") == "Milan"
    assert "SIMULATED" in field(attestation, "message")
    assert server.calls.attestations == 1


async def test_status_shows_the_failure_code_and_nothing_is_sent(
    start, server, provider, tmp_path: Path, ca: tuple[trustme.CA, Path]
) -> None:
    policy = tmp_path / "strict.json"
    policy.write_text(json.dumps(provider.client_policy() | {"measurements": ["00" * 48]}))
    client, _ = await start(settings_for(server, policy, ca[1]))
    result, status = await complete(client)
    assert not result.items
    attestation = field(status, "attestation")
    assert field(attestation, "state") == "failed"
    assert field(attestation, "code") == "attestation.measurement_mismatch"
    assert server.calls.generate_bodies == []
