"""The in-CVM attestation agent: SEV-SNP reports that bind a client's nonce to the proxy's TLS key.

Public surface: :class:`Agent` (the proxy's ``AttestationAgent``; its JSON document is
:mod:`cube_wire.document`), :func:`select_provider`, the :class:`AttestationProvider` protocol and
:class:`Evidence`, the three providers (:class:`ConfigfsTsmProvider`, :class:`SevGuestProvider`,
:class:`SimulatedProvider` with :class:`SimulatedOptions`), the TLS-key helpers (:func:`spki_der`) and the
error hierarchy. Wiring into the proxy::

    identity = new_tls_identity(settings.tls_hostnames, days=settings.tls_cert_days)
    agent = Agent(select_provider("auto"), identity.spki_der)
    app = create_proxy_app(settings, auth=auth, agent=agent, identity=identity)
"""

from cube_stack.agent.agent import MODES, Agent, select_provider
from cube_stack.agent.configfs import DEFAULT_TSM_PATH, ConfigfsTsmProvider, TsmFilesystem
from cube_stack.agent.errors import (
    AgentError,
    AgentRequestError,
    AgentSettingsError,
    EvidenceError,
    ProviderUnavailableError,
    SimulatedStateError,
    SpkiMismatchError,
)
from cube_stack.agent.evidence import AttestationProvider, Evidence
from cube_stack.agent.sevguest import DEFAULT_DEVICE, SevGuestProvider
from cube_stack.agent.simulated import (
    SIMULATED_MEASUREMENT,
    SimulatedOptions,
    SimulatedProvider,
    SimulatedRoot,
    SimulatedTcb,
)
from cube_stack.agent.tls import TlsIdentity, new_tls_identity, peer_spki_der, spki_der, spki_sha256
from cube_wire.certtable import build_cert_table

__all__ = [
    "DEFAULT_DEVICE",
    "DEFAULT_TSM_PATH",
    "MODES",
    "SIMULATED_MEASUREMENT",
    "Agent",
    "AgentError",
    "AgentRequestError",
    "AgentSettingsError",
    "AttestationProvider",
    "ConfigfsTsmProvider",
    "Evidence",
    "EvidenceError",
    "ProviderUnavailableError",
    "SevGuestProvider",
    "SimulatedOptions",
    "SimulatedProvider",
    "SimulatedRoot",
    "SimulatedStateError",
    "SimulatedTcb",
    "SpkiMismatchError",
    "TlsIdentity",
    "TsmFilesystem",
    "build_cert_table",
    "new_tls_identity",
    "peer_spki_der",
    "select_provider",
    "spki_der",
    "spki_sha256",
]
