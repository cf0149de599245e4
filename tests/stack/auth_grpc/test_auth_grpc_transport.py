"""Transport: TLS and mTLS with a CA made at test time, a server that is down, slow or failing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from cube_auth_grpc_testkit import World

from cube_stack.auth import AuthService, AuthSettingsError
from cube_stack.auth.grpc import (
    AuthServiceUnavailableError,
    ClientTLS,
    GrpcAuthClient,
    GrpcAuthServer,
    ServerTLS,
    Stubs,
    serve_grpc,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_tls(ca: trustme.CA, *, mutual: bool) -> ServerTLS:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return ServerTLS(chain, cert.private_key_pem.bytes(), ca.cert_pem.bytes() if mutual else None)


def client_tls(ca: trustme.CA, *, with_cert: bool, root: trustme.CA | None = None) -> ClientTLS:
    if not with_cert:
        return ClientTLS(root_ca=(root or ca).cert_pem.bytes())
    cert = ca.issue_cert("proxy.cube.test")
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return ClientTLS((root or ca).cert_pem.bytes(), chain, cert.private_key_pem.bytes())


async def serve(service: Any, stubs: Stubs, tls: ServerTLS | None = None) -> GrpcAuthServer:
    return await serve_grpc(service, tls=tls, stubs=stubs)


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_tls_round_trip(
    service: AuthService, stubs: Stubs, world: World, ca: trustme.CA, mutual: bool
) -> None:
    server = await serve(service, stubs, server_tls(ca, mutual=mutual))
    try:
        async with GrpcAuthClient(server.target, tls=client_tls(ca, with_cert=mutual), stubs=stubs) as client:
            principal = await client.authenticate(world.alice.access_token)
    finally:
        await server.stop(None)

    assert principal.user_id == world.alice.id


@pytest.mark.parametrize(
    ("mutual", "case"),
    [(False, "untrusted-server"), (True, "no-client-cert"), (True, "plaintext")],
    ids=["untrusted-server", "mtls-without-client-cert", "plaintext-to-tls"],
)
async def test_tls_failures_are_unavailable(
    service: AuthService, stubs: Stubs, world: World, ca: trustme.CA, mutual: bool, case: str
) -> None:
    tls: ClientTLS | None = {
        "untrusted-server": client_tls(ca, with_cert=False, root=trustme.CA()),
        "no-client-cert": client_tls(ca, with_cert=False),
        "plaintext": None,
    }[case]
    server = await serve(service, stubs, server_tls(ca, mutual=mutual))
    try:
        async with GrpcAuthClient(server.target, tls=tls, stubs=stubs, timeout=5) as client:
            with pytest.raises(AuthServiceUnavailableError) as raised:
                await client.authenticate(world.alice.access_token)
    finally:
        await server.stop(None)

    assert raised.value.code == "auth.unavailable"


def test_client_cert_without_key_is_a_settings_error(ca: trustme.CA) -> None:
    with pytest.raises(AuthSettingsError) as raised:
        ClientTLS(ca.cert_pem.bytes(), cert_chain=b"cert")

    assert raised.value.code == "auth.settings_invalid"


async def test_server_down_is_unavailable(service: AuthService, stubs: Stubs) -> None:
    server = await serve(service, stubs)
    await server.stop(None)

    async with GrpcAuthClient(server.target, stubs=stubs, timeout=5) as client:
        with pytest.raises(AuthServiceUnavailableError) as raised:
            await client.authenticate("any-token")

    assert raised.value.code == "auth.unavailable"


class StuckService:
    """An AuthService stand-in whose authenticate waits until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def authenticate(self, token: str) -> Any:
        self.entered.set()
        await self.release.wait()
        raise AssertionError("released only at teardown")


class BrokenStoreService:
    """An AuthService stand-in whose database is gone."""

    async def authenticate(self, token: str) -> Any:
        raise ConnectionRefusedError("database unreachable")


@pytest.fixture
async def stuck(stubs: Stubs) -> AsyncIterator[tuple[StuckService, GrpcAuthServer]]:
    fake = StuckService()
    server = await serve(fake, stubs)
    try:
        yield fake, server
    finally:
        fake.release.set()
        await server.stop(None)


async def test_deadline_exceeded_is_unavailable(
    stuck: tuple[StuckService, GrpcAuthServer], stubs: Stubs
) -> None:
    fake, server = stuck

    async with GrpcAuthClient(server.target, stubs=stubs, timeout=0.3) as client:
        with pytest.raises(AuthServiceUnavailableError):
            await client.authenticate("any-token")

    assert fake.entered.is_set()


async def test_store_failure_is_unavailable(stubs: Stubs) -> None:
    server = await serve(BrokenStoreService(), stubs)
    try:
        async with GrpcAuthClient(server.target, stubs=stubs) as client:
            with pytest.raises(AuthServiceUnavailableError) as raised:
                await client.authenticate("any-token")
    finally:
        await server.stop(None)

    assert raised.value.code == "auth.unavailable"


async def test_a_taken_port_fails_loudly(server: GrpcAuthServer, service: AuthService, stubs: Stubs) -> None:
    with pytest.raises(RuntimeError):  # grpcio raises RuntimeError("Failed to bind ...")
        await serve_grpc(service, port=server.port, stubs=stubs)
