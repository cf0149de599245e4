"""Fixtures: a trustme CA, one SIMULATED root and two attested servers (two TLS keys) per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from cube_lsp.attestation import Product
from cube_lsp.cube.attested import AttestorOptions
from cube_lsp.settings import Settings, parse_settings
from cube_stack.agent import SimulatedOptions, SimulatedProvider, SimulatedRoot
from tests.cube.attested._server import DOMAIN, TOKEN, AttestedServer


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeGetter:
    """Stands in for AMD's key server: records the URLs and fails (or answers ``body``)."""

    def __init__(self, body: bytes | None = None) -> None:
        self.urls: list[str] = []
        self.body = body

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        if self.body is None:
            raise OSError("offline test: no KDS")
        return self.body


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    bundle = tmp_path_factory.mktemp("attested-ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return authority, bundle


@pytest.fixture(scope="session")
def provider() -> SimulatedProvider:
    root = SimulatedRoot.generate(Product.MILAN, rsa_bits=2048)
    return SimulatedProvider(SimulatedOptions(rsa_bits=2048), root=root)


@pytest.fixture(scope="session")
def server_a_session(
    tmp_path_factory: pytest.TempPathFactory, ca: tuple[trustme.CA, Path], provider: SimulatedProvider
) -> Iterator[AttestedServer]:
    with AttestedServer(tmp_path_factory.mktemp("server-a"), ca[0], provider) as server:
        yield server


@pytest.fixture(scope="session")
def server_b_session(
    tmp_path_factory: pytest.TempPathFactory, ca: tuple[trustme.CA, Path], provider: SimulatedProvider
) -> Iterator[AttestedServer]:
    with AttestedServer(tmp_path_factory.mktemp("server-b"), ca[0], provider) as server:
        yield server


@pytest.fixture
def server(server_a_session: AttestedServer) -> Iterator[AttestedServer]:
    server_a_session.reset()
    yield server_a_session
    server_a_session.reset()


@pytest.fixture
def server_b(server_b_session: AttestedServer) -> Iterator[AttestedServer]:
    server_b_session.reset()
    yield server_b_session
    server_b_session.reset()


@pytest.fixture
def policy_file(tmp_path: Path, provider: SimulatedProvider) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(provider.client_policy()))
    return path


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def getter() -> FakeGetter:
    return FakeGetter()


@pytest.fixture
def options(clock: FakeClock, getter: FakeGetter) -> AttestorOptions:
    return AttestorOptions(clock=clock, getter=getter, cache_dir=None)


def make_settings(
    server: AttestedServer, ca_bundle: Path, policy: Path | None, *, mode: str = "simulated", **extra: Any
) -> Settings:
    raw: dict[str, Any] = {
        "endpoint": server.url,
        "domain": DOMAIN,
        "token": TOKEN,
        "tls": {"caBundle": str(ca_bundle)},
        "attestation": {"mode": mode, "policy": str(policy) if policy else None, **extra},
    }
    settings, errors = parse_settings(raw, environ={})
    if errors:
        raise AssertionError(errors)
    return settings
