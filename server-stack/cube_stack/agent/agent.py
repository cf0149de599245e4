"""The in-CVM attestation agent: binds a client nonce and the proxy's TLS key into a fresh SEV-SNP report.

:class:`Agent` implements the proxy's :class:`~cube_stack.proxy.attestation.AttestationAgent` protocol.
For ``attest(nonce, spki_der)`` it computes ``REPORT_DATA = SHA-512(b"cube-attest-v1" || nonce[32] ||
SHA-256(spki_der))`` with :func:`cube_wire.binding.expected_report_data` (one definition for both ends),
asks its provider for a report in a worker thread (the ioctl and configfs reads block), checks that the
report carries that REPORT_DATA, and answers the attestation document of :mod:`cube_wire.document`.

The document is evidence, not a verdict: a client must still verify the report and recompute the binding
from its own nonce and the SPKI of the peer certificate of *its* connection. The agent is made for one TLS
key and refuses to bind any other (``agent.spki_mismatch``), so a proxy wired to the wrong identity fails
closed. :func:`select_provider` picks the provider: ``auto`` takes configfs-tsm when present, else
``/dev/sev-guest``, else fails; it never falls back to the simulated provider, which must be asked for by
name and logs SIMULATED loudly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from pathlib import Path
from typing import Any

from cube_stack.agent.configfs import DEFAULT_TSM_PATH, ConfigfsTsmProvider
from cube_stack.agent.errors import (
    AgentError,
    AgentRequestError,
    AgentSettingsError,
    EvidenceError,
    ProviderUnavailableError,
    SpkiMismatchError,
)
from cube_stack.agent.evidence import AttestationProvider, check_report
from cube_stack.agent.sevguest import DEFAULT_DEVICE, SevGuestProvider
from cube_stack.agent.simulated import SimulatedOptions, SimulatedProvider
from cube_wire.attestation_errors import BindingError
from cube_wire.binding import expected_report_data
from cube_wire.document import attestation_document

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = ("auto", "configfs-tsm", "sev-guest", "simulated")


class Agent:
    """The proxy's attestation agent: one provider, one TLS key (its DER SubjectPublicKeyInfo)."""

    def __init__(self, provider: AttestationProvider, spki_der: bytes, *, max_concurrent: int = 4) -> None:
        if not isinstance(provider, AttestationProvider):
            raise AgentSettingsError(
                "provider", f"found {type(provider).__name__}, wanted an AttestationProvider"
            )
        if not isinstance(spki_der, bytes | bytearray) or not spki_der:
            raise AgentSettingsError("spki_der", "found no bytes, wanted the DER SPKI of the proxy's TLS key")
        if max_concurrent < 1:
            raise AgentSettingsError("max_concurrent", f"found {max_concurrent}, wanted at least 1")
        self.provider = provider
        self.spki_der = bytes(spki_der)
        self._slots = asyncio.Semaphore(max_concurrent)  # bounds the worker threads a flood can occupy
        log.log(
            logging.WARNING if provider.simulated else logging.INFO,
            "agent.ready provider=%s%s spki_sha256=%s",
            provider.name,
            " (SIMULATED: no SEV-SNP hardware behind these reports)" if provider.simulated else "",
            hashlib.sha256(self.spki_der).hexdigest(),
            extra={"event": "agent.ready"},
        )

    async def attest(self, nonce: bytes, spki_der: bytes) -> dict[str, Any]:
        """Return the attestation document binding ``nonce`` and ``spki_der`` (which must be our key)."""
        if not hmac.compare_digest(bytes(spki_der), self.spki_der):
            self._log_failure("agent.spki_mismatch")
            raise SpkiMismatchError(
                f"asked to bind the key with SPKI SHA-256 {hashlib.sha256(spki_der).hexdigest()}, "
                f"wanted this agent's key {hashlib.sha256(self.spki_der).hexdigest()}"
            )
        try:
            report_data = expected_report_data(nonce, self.spki_der)
        except BindingError as exc:
            raise AgentRequestError(exc.message) from None
        try:
            async with self._slots:
                evidence = await asyncio.to_thread(self.provider.get_report, report_data)
            report = check_report(evidence.report, report_data, self.provider.name)
        except AgentError as exc:
            self._log_failure(exc.code)
            raise
        except OSError as exc:  # a provider outside this package; keep its text out of responses
            self._log_failure("agent.evidence_failed")
            raise EvidenceError(f"{self.provider.name}: {type(exc).__name__} ({exc.errno})") from None
        log.info(
            "agent.attested provider=%s%s certificates=%s",
            self.provider.name,
            " SIMULATED" if self.provider.simulated else "",
            "yes" if evidence.certificates else "no",
            extra={"event": "agent.attested"},
        )
        provider = self.provider
        return attestation_document(
            provider.name, provider.simulated, report, evidence.certificates, bytes(nonce), self.spki_der
        )

    def _log_failure(self, code: str) -> None:
        log.error(
            "agent.attest_failed provider=%s code=%s",
            self.provider.name,
            code,
            extra={"event": "agent.attest"},
        )


def select_provider(
    mode: str = "auto",
    *,
    tsm_path: str | os.PathLike[str] = DEFAULT_TSM_PATH,
    device: str | os.PathLike[str] = DEFAULT_DEVICE,
    vmpl: int | None = None,
    simulated: SimulatedOptions | None = None,
) -> AttestationProvider:
    """Return the provider for ``mode``; ``auto`` never falls back to the simulated provider."""
    if mode not in MODES:
        raise AgentSettingsError("mode", f"found {mode!r}, wanted one of {', '.join(MODES)}")
    if mode == "simulated":
        log.warning(
            "agent.mode SIMULATED attestation chosen explicitly: this is NOT a confidential VM",
            extra={"event": "agent.mode"},
        )
        return SimulatedProvider(simulated)
    if simulated is not None:
        raise AgentSettingsError(
            "simulated", f"found simulated options with mode {mode!r}, wanted mode 'simulated'"
        )
    tsm, dev = Path(tsm_path), Path(device)
    if mode == "configfs-tsm" or (mode == "auto" and tsm.is_dir()):
        chosen: AttestationProvider = ConfigfsTsmProvider(tsm, privlevel=vmpl)
    elif mode == "sev-guest" or (mode == "auto" and dev.exists()):
        chosen = SevGuestProvider(dev, vmpl=0 if vmpl is None else vmpl)
    else:
        raise ProviderUnavailableError(
            f"no SEV-SNP interface: neither {tsm} (configfs-tsm) nor {dev} exists; this is not an SEV-SNP "
            "guest. For dev mode without hardware, choose the simulated provider explicitly.",
            code="agent.no_tee",
        )
    log.info("agent.mode provider=%s (from mode %s)", chosen.name, mode, extra={"event": "agent.mode"})
    return chosen
