"""The pinning network backend on a bare httpcore pool against the attested test server."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpcore
import pytest
import trustme

from cube_lsp.cube.pinning import PinningBackend, PinSet, SpkiNotPinnedError, attestation_exchange
from tests.cube.attested._server import DOMAIN, TOKEN, AttestedServer, RecordingBackend
from tests.cube.attested.conftest import FakeClock

SECRET = b'{"prompt": "def top_secret_pinning_e4a1():"}'


class Pool:
    def __init__(self, ca_bundle: Path, clock: FakeClock) -> None:
        self.pins = PinSet(lifetime_s=60, clock=clock)
        self.recorder = RecordingBackend()
        self.backend = PinningBackend(self.pins, target_host="127.0.0.1", inner=self.recorder)
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl.create_default_context(cafile=str(ca_bundle)), network_backend=self.backend
        )

    async def post(self, server: AttestedServer, *, scheme: str = "https") -> int:
        url = f"{scheme}://127.0.0.1:{server.port}/{DOMAIN}/api/generate"
        headers = [(b"Authorization", f"Bearer {TOKEN}".encode())]
        response = await self.pool.request("POST", url, content=SECRET, headers=headers)
        return response.status

    def sent_secret(self) -> bool:
        return SECRET in self.recorder.sent()


@pytest.fixture
async def pool(ca: tuple[trustme.CA, Path], clock: FakeClock) -> AsyncIterator[Pool]:
    made = Pool(ca[1], clock)
    yield made
    await made.pool.aclose()


def test_pins_expire_and_clear(clock: FakeClock) -> None:
    pins = PinSet(lifetime_s=10, clock=clock)
    assert not pins.any_pinned()
    pins.pin(b"key-a")
    assert pins.is_pinned(b"key-a") and not pins.is_pinned(b"key-b") and pins.any_pinned()
    clock.advance(9.9)
    assert pins.is_pinned(b"key-a")
    clock.advance(0.2)
    assert not pins.is_pinned(b"key-a") and not pins.any_pinned()
    pins.pin(b"key-a")
    assert list(pins.pinned()) == [hashlib.sha256(b"key-a").hexdigest()]
    pins.clear()
    assert not pins.any_pinned()


async def test_an_unpinned_key_is_refused_in_start_tls_before_any_byte(pool: Pool, server) -> None:
    with pytest.raises(SpkiNotPinnedError) as caught:
        await pool.post(server)
    assert caught.value.code == "attestation.spki_not_pinned"
    assert caught.value.spki_der == server.spki_der
    assert len(pool.recorder.handshakes) == 1  # the handshake happened: that is how the key was seen
    assert pool.recorder.writes == []  # but not one byte of the request
    assert server.calls.generate_bodies == []
    assert pool.pool.connections == []  # closed, not pooled


async def test_a_pinned_key_carries_requests(pool: Pool, server) -> None:
    pool.pins.pin(server.spki_der)
    assert await pool.post(server) == 200
    assert await pool.post(server) == 200
    assert pool.recorder.connects == 1  # pooled: one handshake, one check
    assert server.calls.generate_bodies == [SECRET, SECRET]


async def test_a_pooled_connection_is_refused_once_its_pin_expires(
    pool: Pool, server, clock: FakeClock
) -> None:
    pool.pins.pin(server.spki_der)
    assert await pool.post(server) == 200
    writes = len(pool.recorder.writes)
    clock.advance(61)
    with pytest.raises(SpkiNotPinnedError):
        await pool.post(server)
    assert len(pool.recorder.writes) == writes  # nothing written on the pooled connection
    assert pool.pool.connections == []
    assert len(server.calls.generate_bodies) == 1


async def test_the_attestation_exchange_may_use_an_unpinned_key(pool: Pool, server) -> None:
    with attestation_exchange():
        assert await pool.post(server) == 200
    # Outside the exchange the same pooled connection is refused again.
    with pytest.raises(SpkiNotPinnedError):
        await pool.post(server)
    assert len(server.calls.generate_bodies) == 1


async def test_plain_text_to_the_endpoint_is_never_written(pool: Pool, server) -> None:
    pool.pins.pin(server.spki_der)
    with pytest.raises(SpkiNotPinnedError) as caught:
        await pool.post(server, scheme="http")
    assert caught.value.code == "attestation.https_required"
    assert pool.recorder.writes == []


def test_public_names() -> None:
    from cube_lsp.cube import attested, pinning

    for module in (attested, pinning):
        assert sorted(module.__all__) == module.__all__
        assert all(hasattr(module, name) for name in module.__all__)
