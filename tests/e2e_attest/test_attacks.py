"""End to end: every attack on the attested transport fails closed; not one byte of code reaches the model.

The real proxy over TLS, the real agent over a SIMULATED provider, the real auth service, a model backend
that records every byte it receives, and the real ``CubeClient`` with the attested transport. Each attack
is one row: what it does to the world (or to the client's configuration), the stable code the client must
fail with, and -- for attacks that strike in the middle of a session -- what happens after a first,
legitimate request. For every row the suite asserts that

(a) the request fails with exactly that code (codes, never message text);
(b) the model backend received ZERO bytes while the attack was on (so neither the SECRET marker nor any of
    the prompt), and the client never wrote the secret on any connection, not even inside TLS;
(c) no key was pinned because of the attack, and a second request fails the same way, still sending nothing.

Positive controls prove the recorder and the relay work: the honest CVM gets the code (and the status says
SIMULATED), mode ``off`` on loopback sends without attesting, the relay relays, and a new honest CVM behind
a load balancer is attested before it gets code.

A wrong token is not an attack on attestation: attesting needs no token (so none is sent before the
server is proved), and the attested proxy then refuses the request (tested below, backend untouched).
The MITM relay row also asserts that the token never crossed the relay.

Not here: a REVOKED VCEK. Revocation checks are opt-in (``attestation.checkRevocation``) and AMD publishes
CRLs for its own roots only, so a SIMULATED chain has none; the verifier's CRL path is tested in
``tests/attestation/test_verify_fake.py`` and the setting's wiring in
``tests/cube/attested/test_revocation_setting.py``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cube_stack.agent import build_cert_table, new_tls_identity
from cube_stack.agent.simulated import SIMULATED_MEASUREMENT
from cube_wire.certtable import GUID_ARK, GUID_ASK, GUID_VCEK, fingerprint
from tests.e2e_attest._world import COMPLETION, Document, Editor, World, new_secret
from tests.e2e_attest.conftest import OpenEditor, Scene

pytestmark = pytest.mark.e2e

DONE = "".join(COMPLETION)
OTHER_MEASUREMENT = "ef" * 48

Arrange = Callable[[World, Scene], None]
Strike = Callable[[World, Editor], None]
Check = Callable[[World, Editor], None]


@dataclass(frozen=True)
class Attack:
    """One row of the table."""

    id: str
    what: str
    code: str
    arrange: Arrange
    strike: Strike | None = None  # set: a legitimate request succeeds first, then this happens
    check: Check | None = None  # extra assertions after the failures


# -- building blocks -----------------------------------------------------------------------------------


def steps(*arrangements: Arrange) -> Arrange:
    def arrange(world: World, scene: Scene) -> None:
        for step in arrangements:
            step(world, scene)

    return arrange


def platform(name: str) -> Arrange:
    """Proxy ``a``'s CVM is the simulated platform variant ``name``."""

    def arrange(world: World, scene: Scene) -> None:
        switch = world.proxies["a"].switch
        assert switch is not None
        switch.provider = world.providers[name]

    return arrange


def policy(**changes: Any) -> Arrange:
    def arrange(world: World, scene: Scene) -> None:
        scene.policy = world.policy(**changes)

    return arrange


def scene(**changes: Any) -> Arrange:
    def arrange(world: World, s: Scene) -> None:
        for key, value in changes.items():
            setattr(s, key, value)

    return arrange


def document(rewrite: Callable[[World, Document], Document], proxy: str = "a") -> Arrange:
    """The agent of ``proxy`` answers a rewritten document (a compromised host or a tampering relay)."""

    def arrange(world: World, _scene: Scene) -> None:
        switch = world.proxies[proxy].switch
        assert switch is not None
        switch.document = lambda doc: rewrite(world, doc)

    return arrange


def report(edit: Callable[[bytearray], bytes]) -> Arrange:
    def rewrite(_world: World, doc: Document) -> Document:
        raw = bytearray(base64.b64decode(doc["report"]))
        return doc | {"report": base64.b64encode(edit(raw)).decode()}

    return document(rewrite)


def flip_measurement(raw: bytearray) -> bytes:
    raw[0x90] ^= 1  # MEASUREMENT: the signature no longer covers what the report says
    return bytes(raw)


def zero_signature(raw: bytearray) -> bytes:
    raw[0x2A0:0x330] = bytes(0x90)
    return bytes(raw)


def answer(status: int, body: bytes) -> Arrange:
    """Whatever the proxy's attestation route answers, the client receives ``status`` and ``body``."""

    def arrange(world: World, _scene: Scene) -> None:
        interposer = world.proxies["a"].interposer
        assert interposer is not None
        interposer.rewrite = lambda _status, _body: (status, body)

    return arrange


def ask_from_another_root(world: World, doc: Document) -> Document:
    honest = world.providers["honest"]
    table = build_cert_table(
        [
            (GUID_VCEK, _der(honest.vcek_cert)),
            (GUID_ASK, _der(world.other_root.ask_cert)),  # same name as ours, signed by another ARK
            (GUID_ARK, _der(world.root.ark_cert)),
        ]
    )
    return doc | {"certificates": base64.b64encode(table).decode()}


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def bound_to_a_stray_key(world: World, _scene: Scene) -> None:
    """A genuine agent, but made for (and binding) a key the proxy does not serve with."""
    switch = world.proxies["a"].switch
    assert switch is not None
    stray = new_tls_identity(("127.0.0.1",), days=1).spki_der
    switch.agent_key = switch.bind_key = stray


def agent_for_a_stray_key(world: World, _scene: Scene) -> None:
    """The real agent made for another key, asked (as the real endpoint asks) to bind the proxy's key."""
    switch = world.proxies["a"].switch
    assert switch is not None
    switch.agent_key = new_tls_identity(("127.0.0.1",), days=1).spki_der


def replay_captured(world: World, _scene: Scene) -> None:
    """The host answers a genuine document it captured earlier, for somebody else's nonce."""
    captured = world.capture_document("a")
    switch = world.proxies["a"].switch
    assert switch is not None
    switch.document = lambda _doc: captured


def replay_first(world: World, _scene: Scene) -> None:
    """The host keeps the first document of the session and answers it to every later attestation."""
    first: list[Document] = []

    def keep_first(doc: Document) -> Document:
        if not first:
            first.append(doc)
        return first[0]

    switch = world.proxies["a"].switch
    assert switch is not None
    switch.document = keep_first


def expire_pin(_world: World, editor: Editor) -> None:
    editor.clock.advance(editor.settings.attestation.reattest_interval_s + 1)


def balancer_sends_to_b_which_cannot_attest(world: World, _scene: Scene) -> None:
    interposer = world.proxies["a"].interposer
    assert interposer is not None
    interposer.close_connections = True  # every request opens a new connection, as behind a balancer
    document(lambda _w, doc: doc | {"report": _tampered(doc["report"])}, proxy="b")(world, _scene)


def _tampered(report_b64: str) -> str:
    return base64.b64encode(flip_measurement(bytearray(base64.b64decode(report_b64)))).decode()


def switch_to_b(world: World, editor: Editor) -> None:
    editor.net.redirect_to = world.proxies["b"].port


def b_never_got_a_byte_before_attesting(world: World, editor: Editor) -> None:
    b = world.proxies["b"]
    to_b = [c for c in editor.net.connections if c.port == b.port]
    assert to_b, "the balancer never sent the client to b"
    assert all(c.peer_spki_sha256 == b.spki_sha256 for c in to_b)
    assert to_b[0].writes == []  # refused in start_tls, before a single byte
    for connection in to_b[1:]:
        written = b"".join(connection.writes)
        assert written.startswith(f"POST /{world.domain}/attestation ".encode()), written[:60]
    assert b.spki_sha256 not in editor.pinned()


def tighten_policy(world: World, editor: Editor) -> None:
    assert editor.policy_path is not None
    editor.policy_path.write_text(json.dumps(world.policy(measurements=[OTHER_MEASUREMENT])))


def genuine_report_was_relayed(world: World, editor: Editor) -> None:
    assert world.relay is not None and world.relay.connections >= 1
    switch = world.proxies["a"].switch
    assert switch is not None and switch.calls >= 2  # the real CVM answered the relayed requests
    assert world.relay.identity.spki_sha256 not in editor.pinned()
    # The relay read every byte the client sent: the attestation requests, and never the token.
    assert b"/attestation" in world.relay.forwarded
    assert world.token.encode() not in world.relay.forwarded


def opened_no_connection(_world: World, editor: Editor) -> None:
    assert editor.net.connections == []


def settings_refused_off(world: World, editor: Editor) -> None:
    assert [e.field for e in editor.errors] == ["attestation.mode"]
    assert editor.net.connections == []


# -- the table --------------------------------------------------------------------------------------------

NOW = datetime.now(UTC)

ATTACKS = [
    Attack(
        "wrong-measurement",
        "the CVM runs an image the policy does not list",
        "attestation.measurement_mismatch",
        platform("other_measurement"),
    ),
    Attack("debug-bit", "the guest policy allows debugging", "attestation.debug_enabled", platform("debug")),
    Attack(
        "tcb-below-minimum",
        "the platform's SNP firmware SVN is below the policy minimum",
        "attestation.tcb_too_low",
        platform("old_tcb"),
    ),
    Attack(
        "firmware-below-minimum",
        "the firmware build is older than the policy minimum",
        "attestation.firmware_too_low",
        platform("old_firmware"),
    ),
    Attack(
        "vmpl-not-allowed", "the report comes from VMPL 1", "attestation.vmpl_not_allowed", platform("vmpl1")
    ),
    Attack(
        "host-data-mismatch",
        "HOST_DATA names another deployment",
        "attestation.host_data_mismatch",
        platform("other_host_data"),
    ),
    Attack(
        "product-mismatch",
        "the policy allows Genoa only, the report is from Milan",
        "attestation.product_not_allowed",
        policy(products=["Genoa"]),
    ),
    Attack(
        "tampered-report",
        "one bit of MEASUREMENT flipped after signing",
        "attestation.bad_signature",
        report(flip_measurement),
    ),
    Attack(
        "zeroed-signature",
        "the report's signature is all zero",
        "attestation.bad_signature",
        report(zero_signature),
    ),
    Attack(
        "ask-from-another-root",
        "VCEK and ARK ours, the ASK (same name) from another simulated root",
        "attestation.chain_invalid",
        document(ask_from_another_root),
    ),
    Attack(
        "chain-from-another-root",
        "the whole chain from a simulated root the policy does not name",
        "attestation.root_untrusted",
        platform("other_root"),
    ),
    Attack(
        "expired-vcek",
        "verified eight years on: the VCEK (seven years) has expired",
        "attestation.cert_expired",
        scene(now=NOW + timedelta(days=8 * 365)),
    ),
    Attack(
        "chain-not-yet-valid",
        "verified two days before the chain was issued",
        "attestation.cert_not_yet_valid",
        scene(now=NOW - timedelta(days=2)),
    ),
    Attack(
        "report-for-another-spki",
        "a genuine report binding a key the TLS connection does not have",
        "attestation.binding_mismatch",
        bound_to_a_stray_key,
    ),
    Attack(
        "agent-made-for-another-key",
        "the real agent refuses to bind a key it was not made for; the proxy answers 500",
        "attestation.unavailable",
        agent_for_a_stray_key,
    ),
    Attack(
        "replayed-document",
        "a genuine document captured earlier, for another nonce",
        "attestation.binding_mismatch",
        replay_captured,
    ),
    Attack(
        "stale-nonce-on-reattestation",
        "after the interval, the host answers the session's first document again",
        "attestation.binding_mismatch",
        steps(replay_first, scene(interval_s=60)),
        strike=expire_pin,
    ),
    Attack(
        "mitm-relay-genuine-report",
        "a TLS server with its own (CA-trusted) key relays the genuine report of the real CVM",
        "attestation.binding_mismatch",
        scene(target="relay"),
        check=genuine_report_was_relayed,
    ),
    Attack(
        "pooled-connection-swapped",
        "after a verified request the balancer sends new connections to a CVM that cannot attest",
        "attestation.bad_signature",
        balancer_sends_to_b_which_cannot_attest,
        strike=switch_to_b,
        check=b_never_got_a_byte_before_attesting,
    ),
    Attack(
        "policy-tightened-mid-session",
        "the policy file drops the running measurement after a verified request",
        "attestation.measurement_mismatch",
        lambda _w, _s: None,
        strike=tighten_policy,
    ),
    Attack(
        "required-mode-simulated-root",
        "mode required (AMD roots only) against a SIMULATED chain",
        "attestation.root_untrusted",
        steps(scene(mode="required"), policy(root_of_trust="amd")),
    ),
    Attack(
        "required-mode-simulated-policy",
        "mode required with a policy naming a simulated root",
        "attestation.policy_invalid",
        scene(mode="required"),
        check=opened_no_connection,
    ),
    Attack(
        "simulated-mode-other-root",
        "mode simulated with a policy naming another simulated root",
        "attestation.root_untrusted",
        lambda w, s: policy(root_of_trust={"simulated": fingerprint(w.other_root.ark_cert)})(w, s),
    ),
    Attack(
        "simulated-mode-amd-policy",
        "mode simulated with a policy that trusts AMD only",
        "attestation.policy_invalid",
        policy(root_of_trust="amd"),
        check=opened_no_connection,
    ),
    Attack(
        "truncated-report",
        "the report cut after the signed part",
        "attestation.report_malformed",
        report(lambda r: bytes(r[:0x2A0])),
    ),
    Attack(
        "oversized-report",
        "64 bytes appended to the report",
        "attestation.report_malformed",
        report(lambda r: bytes(r) + bytes(64)),
    ),
    Attack(
        "oversized-document",
        "a document over the 1 MiB limit",
        "attestation.document_invalid",
        document(lambda _w, doc: doc | {"padding": "A" * ((1 << 20) + 1)}),
    ),
    Attack(
        "garbage-answer",
        "the attestation route answers 200 with HTML",
        "attestation.document_invalid",
        answer(200, b"<html><body>It works!</body></html>"),
    ),
    Attack(
        "no-vcek-offline",
        "the document ships no certificates and the key server may not be asked",
        "attestation.vcek_unavailable",
        document(lambda _w, doc: doc | {"certificates": None}),
    ),
    Attack(
        "no-agent-501",
        "a proxy without an attestation agent",
        "attestation.unavailable",
        scene(target="bare"),
    ),
    Attack(
        "attestation-route-404",
        "the attestation route answers 404",
        "attestation.unavailable",
        answer(404, b'{"message": "no such route", "code": "cube_proxy.route_not_found"}'),
    ),
    Attack(
        "mode-off-remote-endpoint",
        "mode off for a host that is not loopback (settings refuse it; forced, the client refuses)",
        "attestation.off_not_loopback",
        scene(host="cube.example.com", mode="off", force_mode="off"),
        check=settings_refused_off,
    ),
    Attack(
        "missing-policy-file",
        "the policy file named in the settings does not exist",
        "attestation.policy_invalid",
        scene(policy_file="missing"),
        check=opened_no_connection,
    ),
    Attack(
        "policy-unset",
        "mode simulated without a policy",
        "attestation.policy_missing",
        scene(policy_file="unset"),
        check=opened_no_connection,
    ),
    Attack(
        "plain-http-required",
        "mode required over http://",
        "attestation.https_required",
        scene(scheme="http", mode="required", policy_file="unset"),
        check=opened_no_connection,
    ),
]


@pytest.mark.parametrize("trust", ["ca-bundle", "attestation-only"])
@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.id for attack in ATTACKS])
async def test_attack_fails_closed(world: World, open_editor: OpenEditor, attack: Attack, trust: str) -> None:
    configured = Scene(ca_bundle=trust == "ca-bundle")
    attack.arrange(world, configured)
    editor = open_editor(configured)
    if attack.strike is not None:
        legitimate = new_secret()
        assert await editor.complete(legitimate) == DONE
        assert world.backend.saw(legitimate)  # the recorder sees code when code is sent
        attack.strike(world, editor)
    trusted_before = editor.pinned()
    mark = world.backend.mark()

    secret = new_secret()
    error = await editor.fails(secret)

    assert error.code == attack.code
    assert world.backend.since(mark) == b""  # not one byte reached the model backend
    assert not world.backend.saw(secret)
    assert not editor.net.sent(secret)  # never written by the client, not even inside TLS
    assert editor.pinned() <= trusted_before  # the attacker's key was not pinned
    assert editor.statuses and editor.statuses[-1].state == "failed"
    assert editor.statuses[-1].code == attack.code

    again = new_secret()
    assert (await editor.fails(again)).code == attack.code
    assert world.backend.since(mark) == b""
    assert not editor.net.sent(again)
    assert editor.pinned() <= trusted_before
    if attack.check is not None:
        attack.check(world, editor)


# -- positive controls ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trust", ["ca-bundle", "attestation-only"])
async def test_the_honest_cvm_gets_the_code_and_the_status_says_simulated(
    world: World, open_editor: OpenEditor, trust: str
) -> None:
    # attestation-only: a self-signed key made at start, which no CA vouches for, is trusted through
    # the report bound to it -- how a real CVM is reached.
    editor = open_editor(Scene(ca_bundle=trust == "ca-bundle"))
    secret = new_secret()
    assert await editor.complete(secret) == DONE
    assert world.backend.saw(secret)
    assert world.backend.saw(f"def {secret}_algorithm(x)".encode())
    second = new_secret()
    assert await editor.complete(second) == DONE
    assert world.backend.saw(second)
    assert editor.attestations() == 1  # pinned: the second request did not attest again
    assert editor.pinned() == {world.proxies["a"].spki_sha256}
    status = editor.statuses[-1]
    assert status.state == "simulated" and status.simulated
    assert "SIMULATED" in status.message
    assert status.payload()["state"] == "simulated"
    assert status.measurement == SIMULATED_MEASUREMENT.hex()
    assert status.product == "Milan"
    assert status.spki_sha256 == world.proxies["a"].spki_sha256


async def test_a_wrong_token_is_refused_by_the_attested_proxy_and_nothing_reaches_the_model(
    world: World, open_editor: OpenEditor
) -> None:
    # The attestation needs no token, so it passes; the attested proxy then refuses the request.
    editor = open_editor(Scene(token="not-a-valid-token"))
    mark = world.backend.mark()
    secret = new_secret()
    assert (await editor.fails(secret)).code == "proxy.unauthorized"
    assert world.backend.since(mark) == b""
    assert editor.pinned() == {world.proxies["a"].spki_sha256}
    switch = world.proxies["a"].switch
    assert switch is not None and switch.calls == 1


async def test_mode_off_on_loopback_sends_without_attesting(world: World, open_editor: OpenEditor) -> None:
    editor = open_editor(Scene(mode="off", policy_file="unset"))
    secret = new_secret()
    assert await editor.complete(secret) == DONE
    assert world.backend.saw(secret)
    switch = world.proxies["a"].switch
    assert switch is not None and switch.calls == 0


async def test_the_relay_relays_when_nothing_is_attested(world: World, open_editor: OpenEditor) -> None:
    # Proves the MITM row fails on the binding, not on a broken relay.
    editor = open_editor(Scene(target="relay", mode="off", policy_file="unset"))
    secret = new_secret()
    assert await editor.complete(secret) == DONE
    assert world.backend.saw(secret)
    assert world.relay is not None and secret.encode() in world.relay.forwarded
    assert world.token.encode() in world.relay.forwarded  # and so it would see the token


async def test_a_new_honest_cvm_behind_the_balancer_is_attested_before_it_gets_code(
    world: World, open_editor: OpenEditor
) -> None:
    a, b = world.proxies["a"], world.proxies["b"]
    assert a.interposer is not None
    a.interposer.close_connections = True
    editor = open_editor(Scene())
    assert await editor.complete(new_secret()) == DONE
    editor.net.redirect_to = b.port
    secret = new_secret()
    assert await editor.complete(secret) == DONE
    assert world.backend.saw(secret)
    assert editor.pinned() == {a.spki_sha256, b.spki_sha256}
    assert editor.attestations() == 2
    to_b = [c for c in editor.net.connections if c.port == b.port]
    assert to_b[0].writes == []  # refused before a byte, then attested
    carried = b"".join(to_b[1].writes)
    assert carried.startswith(f"POST /{world.domain}/attestation ".encode())
    assert secret.encode() in carried  # the same connection, once b's key was pinned
