"""The attested transport: no request reaches the proxy until its TLS key proved it lives in an attested CVM.

This bridges ``cube_lsp.attestation`` (pure verification) and the HTTP client. Composition, inside out::

    httpcore backend  ->  PinningBackend (pinning.py)  ->  PoolTransport (transport.py)  ->  AttestedTransport
                          start_tls/write refuse             one pool for the attestation
                          unpinned keys                      request and the code

Before a request goes out, :class:`AttestedTransport` makes sure some key is pinned. If none is (first
request, interval expired, policy file changed), :class:`Attestor` POSTs ``{"nonce": <hex of 32 fresh
bytes>}`` to ``/{domain}/attestation`` through the same pool, takes the peer SPKI from the
``ssl_object`` of the connection that answered, and checks, in this order: the agent's document, the report
bytes, REPORT_DATA = SHA-512("cube-attest-v1" || nonce || SHA-256(SPKI)) (``check_binding``), AMD's (or
the policy's simulated) signature chain (``verify_report``) and the policy (``check_policy``). Only then is
the SPKI pinned and the request sent. A request that meets a new key is refused by the backend before
anything is written, the new key is attested (it is pinned only if it passes) and the request is retried.
Concurrent callers share one attestation. Every failure raises a ``CubeError`` whose code is the
verifier's (``attestation.*``) or the transport's (``proxy.*``); the request that triggered it is not sent.

Modes (``settings.attestation.mode``): ``required`` trusts AMD's pinned roots only; ``simulated`` trusts
only the simulated root the policy names and says SIMULATED everywhere; ``off`` is plain
:func:`~cube_lsp.cube.transport.make_transport`, allowed for a loopback endpoint only.
:class:`AttestationStatus` is what the status bar and ``cube attest`` show.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpcore
import httpx
import platformdirs

from cube_lsp.attestation import (
    AttestationError,
    AttestationReport,
    CertTable,
    Getter,
    Policy,
    PolicyInvalidError,
    TrustedRoot,
    VerifiedReport,
    VerifyOptions,
    check_binding,
    check_policy,
    load_policy,
    parse_cert_table,
    parse_report,
    verify_report,
)
from cube_lsp.attestation.verify import KDS_BASE
from cube_lsp.cube.errors import error_for_status, translate_httpx_errors
from cube_lsp.cube.pinning import (
    PinningBackend,
    PinSet,
    SpkiNotPinnedError,
    attestation_exchange,
    peer_spki_der,
    spki_sha256,
)
from cube_lsp.cube.transport import make_transport
from cube_lsp.settings import Settings, is_loopback_endpoint, tls_checks_ca
from cube_wire.document import AttestationDocument, parse_attestation_document
from cube_wire.errors import CubeError

__all__ = [
    "ATTESTATION_ROUTE",
    "AttestationDocument",
    "AttestationState",
    "AttestationStatus",
    "AttestedTransport",
    "Attestor",
    "AttestorOptions",
    "StatusCallback",
    "check_attestation_settings",
    "default_cache_dir",
    "initial_status",
    "kds_getter",
    "make_attested_transport",
    "make_client_transport",
    "parse_attestation_document",
]

log = logging.getLogger(__name__)

ATTESTATION_ROUTE = "/attestation"
MAX_DOCUMENT_BYTES = 1 << 20  # a report plus a certificate table is about 10 KiB
MAX_NEW_KEYS = 3  # keys one request may meet (a load balancer switching CVMs) before it gives up
NONCE_SIZE = 32
USER_AGENT = "cube-lsp/0.1"

AttestationState = Literal["verified", "simulated", "failed", "unattested"]
StatusCallback = Callable[["AttestationStatus"], None]


@dataclass(frozen=True)
class AttestationStatus:
    """What is known about the proxy's attestation, for the status bar, the CLI and logs."""

    mode: str  # required | simulated | off
    state: AttestationState
    message: str
    measurement: str | None = None  # hex MEASUREMENT of the last report seen
    product: str | None = None  # Milan | Genoa | Turin
    tcb: Mapping[str, int] | None = None  # REPORTED_TCB components
    code: str | None = None  # the failure's stable code
    spki_sha256: str | None = None  # the key the last verdict is about (pinned when it passed)
    root_of_trust: str | None = None  # "amd" (AMD's pinned ARK) or "simulated" (the policy's dev root)
    root_fingerprint: str | None = None  # SHA-256 of the ARK the report's chain ends in
    signer: str | None = None  # VCEK | VLEK
    policy_file: str | None = None  # the policy the report was checked against
    # When the verdict was reached (ISO 8601, UTC); not compared, so the same verdict again is no news.
    verified_at: str | None = field(default=None, compare=False)

    @property
    def simulated(self) -> bool:
        """Return True when the verified report chains to a SIMULATED (dev-mode) root."""
        return self.state == "simulated"

    def payload(self) -> dict[str, Any]:
        """Return the ``attestation`` object of a ``cube/status`` notification."""
        return {
            "mode": self.mode,
            "state": self.state,
            "measurement": self.measurement,
            "product": self.product,
            "tcb": dict(self.tcb) if self.tcb is not None else None,
            "code": self.code,
            "message": self.message,
            "root_of_trust": self.root_of_trust,
            "root_fingerprint": self.root_fingerprint,
            "signer": self.signer,
            "pinned_key_sha256": self.spki_sha256 if self.state in ("verified", "simulated") else None,
            "policy_file": self.policy_file,
            "verified_at": self.verified_at,
        }


def initial_status(settings: Settings) -> AttestationStatus:
    """Return the status before any attestation ran for ``settings``."""
    mode = settings.attestation.mode
    if mode == "off":
        return AttestationStatus(mode, "unattested", "attestation is off (loopback endpoint only)")
    return AttestationStatus(mode, "unattested", "not attested yet: the first request attests the proxy")


def default_cache_dir() -> Path:
    """Return where VCEKs and CRLs fetched from AMD are cached (the user's cache directory)."""
    return Path(platformdirs.user_cache_dir("cube-lsp")) / "attestation"


def kds_getter(url: str) -> bytes:
    """Fetch a VCEK or CRL from AMD's key server (kdsintf.amd.com) and return the body."""
    if not url.startswith(KDS_BASE + "/"):
        raise ValueError(f"refusing to fetch {url!r}: only {KDS_BASE} is asked for certificates")
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.content


def _random_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


@dataclass(frozen=True)
class AttestorOptions:
    """The attestor's I/O and time, injectable; the defaults are what production uses."""

    nonce_source: Callable[[], bytes] = _random_nonce  # 32 fresh random bytes per attestation
    clock: Callable[[], float] = time.monotonic  # measures the re-attestation interval
    now: Callable[[], datetime] | None = None  # certificate validity time; unset: the system clock
    getter: Getter | None = kds_getter  # fetches a VCEK from AMD when the report has none; None: never
    cache_dir: Path | None = field(default_factory=default_cache_dir)  # fetched VCEKs/CRLs; None: no cache
    offline: bool = False  # True: use cache_dir only, never fetch


# --------------------------------------------------------------------------------------------- document


# --------------------------------------------------------------------------------------------- settings


def check_attestation_settings(settings: Settings) -> None:
    """Raise unless the attestation mode can protect ``settings.endpoint`` (mode off: loopback only)."""
    endpoint = settings.endpoint
    if not endpoint:
        return  # the client reports proxy.not_configured
    if settings.attestation.mode == "off":
        if not is_loopback_endpoint(endpoint):
            raise AttestationError(
                f"`attestation.mode` 'off' is allowed only for a loopback endpoint "
                f"(localhost, 127.0.0.0/8, ::1); found {endpoint!r}. Nothing was sent.",
                code="attestation.off_not_loopback",
            )
    elif not endpoint.startswith("https://"):
        raise AttestationError(
            f"`endpoint` {endpoint!r}: attestation binds the proxy's TLS key, so it needs https:// "
            f"(or `attestation.mode` 'off' for a loopback dev proxy). Nothing was sent.",
            code="attestation.https_required",
        )


# --------------------------------------------------------------------------------------------- attestor


def _tcb_of(report: AttestationReport) -> dict[str, int]:
    return report.reported_tcb.components()


@contextmanager
def _step(name: str, endpoint: str) -> Iterator[None]:
    """Re-raise an attestation failure with the failing check named; the verifier's code is kept."""
    try:
        yield
    except AttestationError as exc:
        raise AttestationError(
            f"attestation of {endpoint} failed at the {name} check: {exc.message}. Nothing was sent.",
            code=exc.code,
        ) from exc


class Attestor:
    """Fetches, verifies and pins the proxy's attestation; one attestation at a time."""

    def __init__(
        self,
        settings: Settings,
        transport: httpx.AsyncBaseTransport,
        pins: PinSet,
        *,
        options: AttestorOptions | None = None,
        on_status: StatusCallback | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self.pins = pins
        self._options = options or AttestorOptions()
        self._on_status = on_status
        self._status = initial_status(settings)
        self._policy: Policy | None = None
        self._policy_digest: bytes | None = None
        self._inflight: asyncio.Future[AttestationStatus] | None = None
        self.attestations = 0  # how many attestations ran (status, tests)

    @property
    def status(self) -> AttestationStatus:
        """Return the latest attestation status."""
        return self._status

    @property
    def endpoint(self) -> str:
        """Return the endpoint being attested."""
        return self._settings.endpoint or ""

    async def ensure(self) -> None:
        """Return once a key is pinned under the current policy; attest if none is."""
        try:
            self.current_policy()
        except CubeError as exc:
            self._failed(exc, None)
            raise
        if not self.pins.any_pinned():
            await self.attest()

    async def attest_key(self, spki_der: bytes) -> None:
        """Attest after meeting the unpinned key ``spki_der`` (unless a concurrent attestation pinned it)."""
        if not self.pins.is_pinned(spki_der):
            log.info("attestation.new_key spki_sha256=%s endpoint=%s", spki_sha256(spki_der), self.endpoint)
            await self.attest()

    async def attest(self) -> AttestationStatus:
        """Run a fresh attestation now, or join the one already running; return its status."""
        task = self._inflight
        if task is None:
            task = asyncio.ensure_future(self._attest_once())
            self._inflight = task
            task.add_done_callback(self._attestation_done)
        return await asyncio.shield(task)

    def _attestation_done(self, task: asyncio.Future[AttestationStatus]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # every waiter re-raises it; retrieved here so asyncio does not log it

    def current_policy(self) -> Policy:
        """Return the policy, re-read when the file's content changed; drop every pin when it did."""
        path_text = self._settings.attestation.policy
        if not path_text:
            self.pins.clear()
            raise AttestationError(
                f"`attestation.mode` is {self._settings.attestation.mode!r} but no `attestation.policy` "
                "file is set; nothing is sent until one is",
                code="attestation.policy_missing",
            )
        path = Path(path_text).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._drop_policy()
            raise PolicyInvalidError(str(path), f"cannot be read ({exc.strerror or exc})") from None
        digest = hashlib.sha256(data).digest()
        if digest == self._policy_digest and self._policy is not None:
            return self._policy
        try:
            policy = load_policy(_policy_json(data, path))
            self._check_root(policy)
        except CubeError:
            self._drop_policy()
            raise
        if self._policy_digest is not None:
            log.info("attestation.policy_changed path=%s: every key is attested again", path)
        self.pins.clear()
        self._policy, self._policy_digest = policy, digest
        return policy

    def _drop_policy(self) -> None:
        self.pins.clear()
        self._policy = self._policy_digest = None

    def _check_root(self, policy: Policy) -> None:
        mode = self._settings.attestation.mode
        if mode == "simulated" and not policy.root_of_trust.startswith("simulated:"):
            raise PolicyInvalidError(
                "root_of_trust",
                "found \"amd\" with `attestation.mode` 'simulated', "
                'wanted {"simulated": "<sha256 of the simulated ARK>"}',
            )
        if mode == "required" and policy.root_of_trust != "amd":
            raise PolicyInvalidError(
                "root_of_trust",
                f"found {policy.root_of_trust} with `attestation.mode` 'required', wanted \"amd\" "
                "(a simulated root is accepted only in mode 'simulated')",
            )

    def _verify_options(self, policy: Policy) -> VerifyOptions:
        opts = self._options
        simulated = policy.root_of_trust.startswith("simulated:")
        roots = (TrustedRoot.from_fingerprint(policy.root_of_trust.split(":", 1)[1]),) if simulated else ()
        return VerifyOptions(
            now=opts.now,
            trust_amd=not simulated,
            extra_roots=roots,
            getter=opts.getter,
            cache_dir=opts.cache_dir,
            offline=opts.offline,
            # AMD publishes CRLs for its own roots only; a simulated chain has none to check.
            check_revocations=self._settings.attestation.check_revocation and not simulated,
        )

    async def _attest_once(self) -> AttestationStatus:
        self.attestations += 1
        report: AttestationReport | None = None
        try:
            policy = self.current_policy()
            nonce = self._options.nonce_source()
            body, spki = await self._fetch(nonce)
            endpoint = self.endpoint
            with _step("document", endpoint):
                document = parse_attestation_document(body)
            with _step("report", endpoint):
                report = parse_report(document.report)
            with _step("binding", endpoint):
                check_binding(report, nonce, spki)
            verified = await self._verify(report, document, policy)
            with _step("policy", endpoint):
                check_policy(verified, policy)
                latest = self.current_policy()
                if latest is not policy:  # the file changed while we attested: the newer policy decides
                    check_policy(verified, latest)
        except CubeError as exc:
            self._failed(exc, report)
            raise
        self.pins.pin(spki)
        return self._verified(verified, spki)

    async def _verify(
        self, report: AttestationReport, document: AttestationDocument, policy: Policy
    ) -> VerifiedReport:
        endpoint = self.endpoint
        with _step("certificate table", endpoint):
            certs = parse_cert_table(document.certificates) if document.certificates else CertTable()
        options = self._verify_options(policy)
        with _step("signature and certificate chain", endpoint):
            fetches = (certs.vcek is None and certs.vlek is None) or options.check_revocations
            if fetches and not options.offline:
                # The VCEK or the CRL may come from AMD's key server: blocking I/O, off the event loop.
                return await asyncio.to_thread(verify_report, report, certs, options)
            return verify_report(report, certs, options)

    async def _fetch(self, nonce: bytes) -> tuple[bytes, bytes]:
        settings = self._settings
        endpoint = self.endpoint
        url = f"{endpoint.rstrip('/')}/{quote(settings.domain or '', safe='')}{ATTESTATION_ROUTE}"
        # No Authorization header: the server is not attested yet, so it may be an impostor collecting
        # tokens. Our proxy serves this route without one (rate-limited per address instead).
        headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", "Accept": "application/json"}
        t = settings.timeouts
        request = httpx.Request(
            "POST",
            url,
            headers=headers,
            content=json.dumps({"nonce": nonce.hex()}).encode(),
            extensions={
                "timeout": {
                    "connect": t.connect_ms / 1000,
                    "read": t.first_byte_ms / 1000,
                    "write": t.first_byte_ms / 1000,
                    "pool": t.connect_ms / 1000,
                }
            },
        )
        with translate_httpx_errors(endpoint, connect_ms=t.connect_ms), attestation_exchange():
            response = await self._transport.handle_async_request(request)
            try:
                stream = response.extensions.get("network_stream")
                ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
                body = await _read_limited(response.aiter_raw(), MAX_DOCUMENT_BYTES)
            finally:
                await response.aclose()
        status = response.status_code
        if status in (401, 403):
            raise AttestationError(
                f"{endpoint} wants a token before it has been attested (HTTP {status}); cube-lsp never "
                "sends a credential to a server it has not verified. Use a Cube proxy that serves "
                "/{domain}/attestation without a token. Nothing was sent.",
                code="attestation.token_required",
            )
        if status != 200:
            detail = error_for_status(status, body, route=ATTESTATION_ROUTE, secrets=(settings.token or "",))
            raise AttestationError(
                f"{endpoint} did not attest: {detail.message}. Nothing was sent.",
                code="attestation.unavailable",
            )
        return body, peer_spki_der(ssl_object)

    def _verified(self, verified: VerifiedReport, spki: bytes) -> AttestationStatus:
        report = verified.report
        measurement = report.measurement.hex()
        key = spki_sha256(spki)
        if verified.simulated:
            message = (
                f"SIMULATED attestation (dev mode, NOT a confidential VM): {verified.product.value}, "
                f"measurement {measurement[:16]}…"
            )
            log.warning(
                "attestation.verified SIMULATED endpoint=%s root=%s measurement=%s spki_sha256=%s",
                self.endpoint,
                verified.root,
                measurement,
                key,
            )
        else:
            message = f"attested: AMD SEV-SNP {verified.product.value}, measurement {measurement[:16]}…"
            log.info(
                "attestation.verified endpoint=%s product=%s measurement=%s spki_sha256=%s",
                self.endpoint,
                verified.product.value,
                measurement,
                key,
            )
        status = AttestationStatus(
            mode=self._settings.attestation.mode,
            state="simulated" if verified.simulated else "verified",
            message=message,
            measurement=measurement,
            product=verified.product.value,
            tcb=_tcb_of(report),
            spki_sha256=key,
            root_of_trust="amd" if not verified.simulated else "simulated",
            root_fingerprint=verified.root_fingerprint,
            signer=verified.signer.name,
            policy_file=self._settings.attestation.policy,
            verified_at=self._wall_clock_iso(),
        )
        self._set(status)
        return status

    def _failed(self, error: CubeError, report: AttestationReport | None) -> None:
        log.warning("attestation.failed endpoint=%s code=%s", self.endpoint, error.code)
        self._set(
            AttestationStatus(
                mode=self._settings.attestation.mode,
                state="failed",
                message=error.message,
                measurement=report.measurement.hex() if report is not None else None,
                product=report.product.value if report is not None and report.product else None,
                tcb=_tcb_of(report) if report is not None else None,
                code=error.code,
                policy_file=self._settings.attestation.policy,
                verified_at=self._wall_clock_iso(),
            )
        )

    def _wall_clock_iso(self) -> str:
        now = self._options.now() if self._options.now is not None else datetime.now(UTC)
        return now.astimezone(UTC).isoformat(timespec="seconds")

    def _set(self, status: AttestationStatus) -> None:
        changed = status != self._status
        self._status = status
        if changed and self._on_status is not None:
            self._on_status(status)


def _policy_json(data: bytes, path: Path) -> Any:
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PolicyInvalidError(str(path), f"is not JSON ({exc})") from None


async def _read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise AttestationError(
                f"attestation document: larger than {limit} bytes", code="attestation.document_invalid"
            )
    return bytes(body)


# --------------------------------------------------------------------------------------------- transport


class AttestedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends a request only over a connection to an attested, pinned key."""

    def __init__(self, inner: httpx.AsyncBaseTransport, attestor: Attestor) -> None:
        self._inner = inner
        self.attestor = attestor

    @property
    def attestation_status(self) -> AttestationStatus:
        """Return the attestor's latest status."""
        return self.attestor.status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Attest if needed, then send; a new key is attested (and pinned only if it passes) first."""
        await self.attestor.ensure()
        for _ in range(MAX_NEW_KEYS):
            try:
                return await self._inner.handle_async_request(request)
            except SpkiNotPinnedError as exc:
                # Refused before a byte was written; a request with a replayable body can try again.
                if exc.spki_der is None or not isinstance(request.stream, httpx.ByteStream):
                    raise
                await self.attestor.attest_key(exc.spki_der)
        raise SpkiNotPinnedError(
            f"{self.attestor.endpoint} presented {MAX_NEW_KEYS} different unattested keys in a row; "
            "nothing was sent",
        )

    async def aclose(self) -> None:
        """Close the pool."""
        await self._inner.aclose()


def make_attested_transport(
    settings: Settings,
    *,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
    options: AttestorOptions | None = None,
    on_status: StatusCallback | None = None,
) -> AttestedTransport:
    """Return an attested transport for ``settings`` (mode required or simulated, https endpoint)."""
    check_attestation_settings(settings)
    opts = options or AttestorOptions()
    pins = PinSet(lifetime_s=settings.attestation.reattest_interval_s, clock=opts.clock)
    host = httpx.URL(settings.endpoint or "").host
    backend = PinningBackend(pins, target_host=host, inner=network_backend)
    inner = make_transport(settings, network_backend=backend, check_ca=tls_checks_ca(settings))
    return AttestedTransport(inner, Attestor(settings, inner, pins, options=opts, on_status=on_status))


def make_client_transport(
    settings: Settings,
    *,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
    options: AttestorOptions | None = None,
    on_status: StatusCallback | None = None,
) -> httpx.AsyncBaseTransport:
    """Return the transport ``settings.attestation.mode`` asks for: attested, or plain for loopback 'off'."""
    try:
        check_attestation_settings(settings)
    except CubeError as exc:
        if on_status is not None:
            on_status(AttestationStatus(settings.attestation.mode, "failed", exc.message, code=exc.code))
        raise
    if settings.attestation.mode == "off":
        log.warning(
            "attestation.off endpoint=%s: requests are NOT attested (loopback only)", settings.endpoint
        )
        return make_transport(settings, network_backend=network_backend)
    return make_attested_transport(
        settings, network_backend=network_backend, options=options, on_status=on_status
    )
