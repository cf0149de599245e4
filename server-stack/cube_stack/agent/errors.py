"""The in-CVM agent's error hierarchy: every failure carries a stable ``code``.

Tests and callers branch on ``code``; the message names the field or path, the value found and the value
wanted. Only :class:`AgentRequestError` is the client's fault: the proxy answers it as a 400 with its
message (the proxy maps agent errors to HTTP; the agent knows nothing of HTTP). Every other agent error
reaches the proxy as an opaque "attestation failed" 500 (its message may quote device paths), and the
agent logs its code::

    CubeError (cube_wire.errors)
    └── AgentError                      agent.error
        ├── AgentRequestError           agent.nonce_invalid        (the proxy answers 400)
        ├── SpkiMismatchError           agent.spki_mismatch        asked to bind a key that is not ours
        ├── ProviderUnavailableError    agent.no_tee               auto mode found neither interface
        │                               agent.device_missing       /dev/sev-guest or configfs path absent
        │                               agent.device_permission    cannot open it (not root?)
        │                               agent.tsm_wrong_provider   configfs-tsm is not backed by sev_guest
        ├── EvidenceError               agent.evidence_failed      the TEE interface failed
        │                               agent.tsm_race             generation changed under us, every retry
        │                               agent.sev_guest_failed     the ioctl failed (firmware/VMM error codes)
        │                               agent.certs_too_large      the host's certificate table does not fit
        │                               agent.report_malformed     not a 0x4A0-byte report
        │                               agent.report_data_mismatch the report does not carry our REPORT_DATA
        ├── SimulatedStateError         agent.simulated_state_invalid   the persisted root is unusable
        │                               agent.simulated_state_insecure  its file is readable by others
        └── AgentSettingsError          agent.settings_invalid     a bad mode or option (raised at start)
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class AgentError(CubeError):
    """An expected failure of the attestation agent."""

    code = "agent.error"


class AgentRequestError(AgentError):
    """The request cannot be attested as given (an unusable nonce); the proxy answers 400."""

    code = "agent.nonce_invalid"


class SpkiMismatchError(AgentError):
    """The agent was asked to bind a TLS key other than the one it was made for."""

    code = "agent.spki_mismatch"


class ProviderUnavailableError(AgentError):
    """No usable SEV-SNP interface: the device or configfs entry is absent or cannot be opened."""

    code = "agent.no_tee"


class EvidenceError(AgentError):
    """The SEV-SNP interface answered, but not with a usable report."""

    code = "agent.evidence_failed"


class SimulatedStateError(AgentError):
    """The persisted simulated root of trust cannot be used."""

    code = "agent.simulated_state_invalid"


class AgentSettingsError(AgentError):
    """An agent option has the wrong type or value; ``field`` names it."""

    code = "agent.settings_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"agent setting '{field}': {message}")
        self.field = field
