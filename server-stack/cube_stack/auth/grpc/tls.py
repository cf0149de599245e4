"""TLS settings for the auth gRPC server and client, as SuperMQ's ``pkg/server`` and ``pkg/grpcclient``.

Server: a certificate and key give TLS; adding ``client_ca`` requires and verifies a client certificate
(mTLS). Client: ``root_ca`` gives TLS; adding ``cert_chain`` and ``private_key`` gives mTLS. PEM bytes in,
``grpc`` credentials out; nothing here touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cube_stack.auth.errors import AuthSettingsError


@dataclass(frozen=True)
class ServerTLS:
    """The server's identity and, for mTLS, the CA that client certificates must chain to."""

    cert_chain: bytes  # PEM certificate chain, leaf first
    private_key: bytes = field(repr=False)  # PEM private key of the leaf
    client_ca: bytes | None = None  # PEM CA bundle; unset: client certificates are not requested

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path | None = None) -> ServerTLS:
        """Read the PEM files (``client_ca`` unset: plain TLS)."""
        return cls(cert.read_bytes(), key.read_bytes(), client_ca.read_bytes() if client_ca else None)

    def credentials(self) -> grpc.ServerCredentials:
        """Return the gRPC server credentials (client certificates required when ``client_ca`` is set)."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


@dataclass(frozen=True)
class ClientTLS:
    """The CA that verifies the server and, for mTLS, the client's own certificate and key."""

    root_ca: bytes | None = None  # PEM CA bundle; unset: gRPC's default roots
    cert_chain: bytes | None = None  # PEM client certificate chain; unset: no client certificate
    private_key: bytes | None = field(default=None, repr=False)  # PEM key of ``cert_chain``
    server_name: str | None = None  # name to verify instead of the target's host; unset: the host

    def __post_init__(self) -> None:
        if (self.cert_chain is None) != (self.private_key is None):
            raise AuthSettingsError("grpc_client_cert", "a client certificate and its key go together")

    @classmethod
    def from_files(
        cls, root_ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> ClientTLS:
        """Read the PEM files that are given."""
        return cls(
            root_ca.read_bytes() if root_ca else None,
            cert.read_bytes() if cert else None,
            key.read_bytes() if key else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """Return the gRPC channel credentials."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca, private_key=self.private_key, certificate_chain=self.cert_chain
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Return the channel options that go with these credentials."""
        return [] if self.server_name is None else [("grpc.ssl_target_name_override", self.server_name)]
