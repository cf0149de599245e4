"""The attested transport end to end against a real TLS server on 127.0.0.1 serving the agent's documents."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trustme

from cube_lsp.cube.attested import AttestationStatus, AttestorOptions, make_client_transport
from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import Settings, parse_settings
from cube_stack.agent import SIMULATED_MEASUREMENT, SimulatedProvider
from cube_wire.errors import CubeError
from tests.cube.attested._server import COMPLETION, TOKEN, AttestedServer, RecordingBackend
from tests.cube.attested.conftest import FakeClock, FakeGetter, make_settings

SECRET = "def top_secret_algorithm_9f1e(x):"
FIM = FimRequest(
    model="qwen2.5-coder:1.5b", prompt=SECRET + "\n    return", suffix="\n# end of secret file\n"
)


class Harness:
    """One client over a recording backend, with every status it reported."""

    def __init__(self, settings: Settings, options: AttestorOptions, backend: RecordingBackend) -> None:
        self.backend = backend
        self.statuses: list[AttestationStatus] = []
        factory = partial(
            make_client_transport, network_backend=backend, options=options, on_status=self.statuses.append
        )
        self.client = CubeClient(settings, transport_factory=factory)

    async def complete(self) -> str:
        async with contextlib.aclosing(self.client.stream_fim(FIM)) as chunks:
            return "".join([chunk async for chunk in chunks])

    async def fails(self) -> CubeError:
        with pytest.raises(CubeError) as caught:
            await self.complete()
        return caught.value

    def code_was_sent(self) -> bool:
        return SECRET.encode() in self.backend.sent()


@pytest.fixture
async def harness_for(ca: tuple[trustme.CA, Path], options: AttestorOptions):
    made: list[Harness] = []

    def make(
        server: AttestedServer,
        policy: Path | None,
        *,
        mode: str = "simulated",
        opts: AttestorOptions | None = None,
        **extra: Any,
    ) -> Harness:
        harness = Harness(
            make_settings(server, ca[1], policy, mode=mode, **extra), opts or options, RecordingBackend()
        )
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.client.aclose()


# -- the happy path ------------------------------------------------------------------------------


async def test_first_request_attests_on_the_same_pool_then_sends(harness_for, server, policy_file) -> None:
    nonce = bytes(range(1, 33))
    h = harness_for(server, policy_file, opts=AttestorOptions(nonce_source=lambda: nonce, cache_dir=None))
    assert await h.complete() == "".join(COMPLETION)
    assert await h.complete() == "".join(COMPLETION)
    assert server.calls.attestations == 1
    assert server.calls.nonces == [nonce]
    assert len(server.calls.generate_bodies) == 2
    # One TLS connection: the attestation request first, the code after it, on the same connection.
    assert h.backend.connects == 1
    first, *rest = [data for _, data in h.backend.writes]
    assert first.startswith(b"POST /attested-domain/attestation ")
    assert SECRET.encode() not in first and SECRET.encode() in b"".join(rest)
    # The token waits for the attestation too: an unattested server may be an impostor collecting them.
    assert TOKEN.encode() not in first and TOKEN.encode() in b"".join(rest)
    assert server.calls.attestation_authorizations == [None]
    status = h.statuses[-1]
    assert status.state == "simulated" and status.simulated
    assert status.measurement == SIMULATED_MEASUREMENT.hex()
    assert status.product == "Milan"
    assert status.tcb == {"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}
    assert status.code is None
    assert "SIMULATED" in status.message
    assert status.payload()["state"] == "simulated"


async def test_concurrent_first_requests_share_one_attestation(harness_for, server, policy_file) -> None:
    h = harness_for(server, policy_file)
    results = await asyncio.gather(*(h.complete() for _ in range(10)))
    assert results == ["".join(COMPLETION)] * 10
    assert server.calls.attestations == 1
    assert len(server.calls.generate_bodies) == 10


async def test_a_cancelled_first_request_does_not_cancel_the_shared_attestation(
    harness_for, server, policy_file
) -> None:
    tasks: dict[str, asyncio.Future[str]] = {}

    def nonce() -> bytes:
        tasks["first"].cancel()  # the attestation is running: its first requester gives up
        return secrets.token_bytes(32)

    h = harness_for(server, policy_file, opts=AttestorOptions(nonce_source=nonce, cache_dir=None))
    first = tasks["first"] = asyncio.ensure_future(h.complete())
    second = asyncio.ensure_future(h.complete())
    assert await second == "".join(COMPLETION)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert server.calls.attestations == 1


# -- fail closed: not one byte of code -----------------------------------------------------------


def _tamper_report(document: dict[str, Any]) -> dict[str, Any]:
    report = bytearray(base64.b64decode(document["report"]))
    report[0x90] ^= 1  # MEASUREMENT: the signature no longer covers it
    return document | {"report": base64.b64encode(bytes(report)).decode()}


def _policy(provider: SimulatedProvider, **changes: Any) -> dict[str, Any]:
    return provider.client_policy() | changes


FAILURES: list[tuple[str, Callable[..., None], str]] = [
    (
        "measurement",
        lambda s, p, path: path.write_text(json.dumps(_policy(p, measurements=["ab" * 48]))),
        "attestation.measurement_mismatch",
    ),
    (
        "debug",
        lambda s, p, path: path.write_text(json.dumps(_policy(p, vmpls=[1]))),
        "attestation.vmpl_not_allowed",
    ),
    ("signature", lambda s, p, path: setattr(s, "tamper", _tamper_report), "attestation.bad_signature"),
    (
        "document",
        lambda s, p, path: setattr(s, "tamper", lambda d: d | {"version": 2}),
        "attestation.document_invalid",
    ),
    (
        "report",
        lambda s, p, path: setattr(s, "tamper", lambda d: d | {"report": base64.b64encode(b"x").decode()}),
        "attestation.report_malformed",
    ),
    (
        "root",
        lambda s, p, path: path.write_text(json.dumps(_policy(p, root_of_trust={"simulated": "cd" * 32}))),
        "attestation.root_untrusted",
    ),
    ("unavailable", lambda s, p, path: setattr(s, "attestation_status", 501), "attestation.unavailable"),
    # A server that wants the token before it is attested (upstream Cube does) does not get it.
    (
        "token-required",
        lambda s, p, path: setattr(s, "attestation_needs_token", True),
        "attestation.token_required",
    ),
]


@pytest.mark.parametrize(("case", "arrange", "code"), FAILURES, ids=[case for case, _, _ in FAILURES])
async def test_failed_attestation_sends_no_code(
    harness_for, server, provider, policy_file, case: str, arrange: Callable[..., None], code: str
) -> None:
    arrange(server, provider, policy_file)
    h = harness_for(server, policy_file)
    error = await h.fails()
    assert error.code == code
    assert not h.code_was_sent()
    assert server.calls.generate_bodies == []
    assert h.statuses[-1].state == "failed"
    assert h.statuses[-1].code == code
    # Still failing, still nothing sent: a failed attestation pins nothing.
    assert (await h.fails()).code == code
    assert not h.code_was_sent()
    assert set(server.calls.attestation_authorizations) <= {None}  # no token went out either


async def test_a_report_bound_to_another_key_is_a_relay(harness_for, server, server_b, policy_file) -> None:
    server.bind_spki = server_b.spki_der  # a genuine CVM's report, relayed over a connection we did not get
    h = harness_for(server, policy_file)
    assert (await h.fails()).code == "attestation.binding_mismatch"
    assert not h.code_was_sent()
    assert h.statuses[-1].measurement == SIMULATED_MEASUREMENT.hex()  # what was found, for diagnosis


async def test_required_mode_refuses_the_simulated_root(harness_for, server, provider, tmp_path) -> None:
    policy = tmp_path / "amd.json"
    policy.write_text(json.dumps(_policy(provider, root_of_trust="amd")))
    h = harness_for(server, policy, mode="required")
    assert (await h.fails()).code == "attestation.root_untrusted"
    assert not h.code_was_sent()
    simulated_policy = harness_for(server, tmp_path / "sim.json", mode="required")
    (tmp_path / "sim.json").write_text(json.dumps(provider.client_policy()))
    assert (await simulated_policy.fails()).code == "attestation.policy_invalid"


async def test_simulated_mode_needs_a_simulated_root(harness_for, server, provider, tmp_path) -> None:
    policy = tmp_path / "amd.json"
    policy.write_text(json.dumps(_policy(provider, root_of_trust="amd")))
    h = harness_for(server, policy)
    assert (await h.fails()).code == "attestation.policy_invalid"
    assert h.backend.connects == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [(None, "attestation.policy_missing"), ("{not json", "attestation.policy_invalid")],
)
async def test_missing_or_invalid_policy_stops_everything(
    harness_for, server, tmp_path, content: str | None, code: str
) -> None:
    policy = None
    if content is not None:
        policy = tmp_path / "bad.json"
        policy.write_text(content)
    h = harness_for(server, policy)
    assert (await h.fails()).code == code
    assert h.backend.connects == 0
    assert h.statuses[-1].code == code


async def test_unreadable_policy_path_stops_everything(harness_for, server, tmp_path) -> None:
    h = harness_for(server, tmp_path / "absent.json")
    assert (await h.fails()).code == "attestation.policy_invalid"
    assert h.backend.connects == 0


async def test_a_missing_vcek_is_asked_of_the_injected_kds_getter(
    harness_for, server, policy_file, getter: FakeGetter
) -> None:
    server.tamper = lambda d: d | {"certificates": None}
    h = harness_for(server, policy_file)
    assert (await h.fails()).code == "attestation.vcek_unavailable"
    assert len(getter.urls) == 1
    assert getter.urls[0].startswith("https://kdsintf.amd.com/vcek/v1/Milan/")
    assert not h.code_was_sent()


# -- re-attestation --------------------------------------------------------------------------------


async def test_a_new_key_is_refused_then_attested_over_a_new_connection(
    harness_for, server, server_b, policy_file
) -> None:
    server.close_connections = True  # every request opens a new connection, like a load balancer
    h = harness_for(server, policy_file)
    assert await h.complete() == "".join(COMPLETION)
    h.backend.redirect_to = server_b.port  # the load balancer now sends us to another CVM
    assert await h.complete() == "".join(COMPLETION)
    assert server.calls.attestations == 1 and server_b.calls.attestations == 1
    assert len(server.calls.generate_bodies) == 1 and len(server_b.calls.generate_bodies) == 1
    # The connection that met B's key first wrote nothing at all: it was refused in start_tls.
    # Connections: 1 A attestation, 2 A code, 3 B refused, 4 B attestation and then the code.
    written_to = {index for index, _ in h.backend.writes}
    assert len(h.backend.handshakes) == 4
    assert sorted(written_to) == [1, 2, 4]
    on_b = b"".join(data for index, data in h.backend.writes if index == 4)
    assert on_b.startswith(b"POST /attested-domain/attestation ") and SECRET.encode() in on_b


async def test_a_new_key_that_fails_is_never_pinned(harness_for, server, server_b, policy_file) -> None:
    server.close_connections = True
    h = harness_for(server, policy_file)
    await h.complete()
    server_b.bind_spki = server.spki_der  # B relays A's evidence
    h.backend.redirect_to = server_b.port
    assert (await h.fails()).code == "attestation.binding_mismatch"
    assert (await h.fails()).code == "attestation.binding_mismatch"
    assert server_b.calls.generate_bodies == []
    assert server_b.calls.attestations == 2


async def test_reattests_after_the_interval(harness_for, server, policy_file, clock: FakeClock) -> None:
    h = harness_for(server, policy_file, reattestIntervalS=60)
    await h.complete()
    clock.advance(59)
    await h.complete()
    assert server.calls.attestations == 1
    clock.advance(2)
    await h.complete()
    assert server.calls.attestations == 2
    assert len(set(server.calls.nonces)) == 2  # a fresh nonce each time
    assert len(server.calls.generate_bodies) == 3


async def test_a_replayed_document_fails_the_binding(
    harness_for, server, policy_file, clock: FakeClock
) -> None:
    captured: list[dict[str, Any]] = []

    def replay(document: dict[str, Any]) -> dict[str, Any]:
        captured.append(document)
        return captured[0]

    server.tamper = replay
    h = harness_for(server, policy_file, reattestIntervalS=60)
    await h.complete()
    clock.advance(61)
    assert (await h.fails()).code == "attestation.binding_mismatch"
    assert len(server.calls.generate_bodies) == 1


async def test_reattests_when_the_policy_file_changes(harness_for, server, provider, policy_file) -> None:
    h = harness_for(server, policy_file)
    await h.complete()
    await h.complete()
    assert server.calls.attestations == 1
    allowed = [SIMULATED_MEASUREMENT.hex(), "ef" * 48]
    policy_file.write_text(json.dumps(_policy(provider, measurements=allowed)))
    await h.complete()
    assert server.calls.attestations == 2
    # A stricter policy: the pinned, pooled connection may not carry the code any more.
    policy_file.write_text(json.dumps(_policy(provider, measurements=["ef" * 48])))
    sent_before = len(server.calls.generate_bodies)
    assert (await h.fails()).code == "attestation.measurement_mismatch"
    policy_file.write_text("[]")
    assert (await h.fails()).code == "attestation.policy_invalid"
    assert len(server.calls.generate_bodies) == sent_before


# -- mode off and configuration -------------------------------------------------------------------


def test_mode_off_is_refused_for_a_remote_endpoint() -> None:
    settings, errors = parse_settings(
        {"endpoint": "https://cube.example.com", "domain": "d", "attestation": {"mode": "off"}}, environ={}
    )
    assert [e.field for e in errors] == ["attestation.mode"]
    assert settings.attestation.mode == "required"  # falls back to the safe mode
    forced = dataclasses.replace(settings, attestation=dataclasses.replace(settings.attestation, mode="off"))
    statuses: list[AttestationStatus] = []
    with pytest.raises(CubeError) as caught:
        make_client_transport(forced, on_status=statuses.append)
    assert caught.value.code == "attestation.off_not_loopback"
    assert statuses[-1].state == "failed"


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_mode_off_is_allowed_for_loopback(endpoint: str) -> None:
    settings, errors = parse_settings({"endpoint": endpoint, "attestation": {"mode": "off"}}, environ={})
    assert errors == []
    assert settings.attestation.mode == "off"


async def test_required_is_the_default_and_needs_https() -> None:
    settings = Settings(endpoint="http://127.0.0.1:9", domain="d", token="t")
    assert settings.attestation.mode == "required"
    async with CubeClient(settings) as client:
        with pytest.raises(CubeError) as caught:
            async with contextlib.aclosing(client.stream_fim(FIM)) as chunks:
                async for _ in chunks:
                    pass
    assert caught.value.code == "attestation.https_required"


def test_interval_setting_is_validated() -> None:
    settings, errors = parse_settings({"attestation": {"reattestIntervalS": 0}}, environ={})
    assert [e.field for e in errors] == ["attestation.reattestIntervalS"]
    assert settings.attestation.reattest_interval_s == 3600


async def test_a_policy_change_during_the_attestation_decides(
    harness_for, server, provider, policy_file
) -> None:
    def nonce() -> bytes:
        policy_file.write_text(json.dumps(_policy(provider, measurements=["ef" * 48])))
        return secrets.token_bytes(32)

    h = harness_for(server, policy_file, opts=AttestorOptions(nonce_source=nonce, cache_dir=None))
    assert (await h.fails()).code == "attestation.measurement_mismatch"
    assert server.calls.generate_bodies == []
