"""Fixtures: one WORLD per session (real proxies, agent, auth, recording backend) and editors per test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.e2e_attest._world import MODEL, ClientNet, Editor, FakeClock, World


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    running = World(tmp_path_factory.mktemp("e2e-attest")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def honest_world(world: World) -> Iterator[World]:
    """Every test starts (and leaves) with honest, transparent proxies."""
    world.reset()
    yield world
    world.reset()


@dataclass
class Scene:
    """What the client is configured with; an attack's ``arrange`` changes it before the client exists."""

    target: str = "a"  # a | b | bare (no agent) | relay (the MITM relay in front of a)
    scheme: str = "https"
    host: str = "127.0.0.1"  # any other name is resolved to 127.0.0.1 by the client's network
    mode: str = "simulated"
    force_mode: str | None = None  # bypass the settings converter (it refuses 'off' for a remote host)
    policy: dict[str, Any] | None = None  # None: the world's policy for the honest CVM
    policy_file: Literal["written", "unset", "missing"] = "written"
    token: str | None = None  # None: the world's PAT
    now: datetime | None = None  # the verifier's certificate clock; None: the system clock
    interval_s: int = 3600  # attestation.reattestIntervalS
    # True: `tls.caBundle` trusts every certificate here (the relay's too), so TLS proves nothing and
    # attestation must; False: no bundle, so in attested modes the report alone vouches for the key.
    ca_bundle: bool = True


OpenEditor = Callable[[Scene], Editor]


@pytest.fixture
async def open_editor(world: World, tmp_path: Path) -> AsyncIterator[OpenEditor]:
    made: list[Editor] = []

    def open_(scene: Scene) -> Editor:
        port = (
            world.relay.port if scene.target == "relay" and world.relay else world.proxies[scene.target].port
        )
        policy_path = tmp_path / f"policy-{len(made)}.json"
        if scene.policy_file == "written":
            policy_path.write_text(json.dumps(scene.policy or world.policy()))
        raw: dict[str, Any] = {
            "endpoint": f"{scene.scheme}://{scene.host}:{port}",
            "domain": world.domain,
            "token": scene.token or world.token,
            "api": "ollama",
            "models": {"completion": MODEL},
            "tls": {"caBundle": str(world.ca_bundle)} if scene.ca_bundle else {},
            "attestation": {
                "mode": scene.mode,
                "policy": None if scene.policy_file == "unset" else str(policy_path),
                "reattestIntervalS": scene.interval_s,
            },
        }
        editor = Editor(
            raw,
            net=ClientNet(hosts={scene.host: "127.0.0.1"}),
            clock=FakeClock(),
            now=scene.now,
            force_mode=scene.force_mode,
            policy_path=policy_path,
        )
        made.append(editor)
        return editor

    yield open_
    for editor in made:
        await editor.client.aclose()
