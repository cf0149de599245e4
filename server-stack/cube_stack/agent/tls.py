"""The TLS key the agent binds: the proxy's own in-memory key pair, and its SubjectPublicKeyInfo.

The proxy already owns the TLS identity (:class:`cube_stack.tls_identity.TlsIdentity`): an ECDSA P-256 key
made at start, a self-signed certificate, and an ``ssl.SSLContext`` loaded through an anonymous
``memfd_create`` file holding the key encrypted with a random in-memory password (a 0600 temporary file
unlinked right after loading where memfd does not exist). We never write the key to disk. The agent does
not make a second key: it binds the SPKI of that identity, so the key clients see in the handshake is the
key in REPORT_DATA. This module only adds the SPKI helpers both sides need (the agent when it starts, the
tests and clients when they read the peer certificate of a live connection)::

    identity = new_tls_identity(settings.tls_hostnames, days=settings.tls_cert_days)
    agent = Agent(provider, spki_der(identity))
    app = create_proxy_app(settings, auth=auth, agent=agent, identity=identity)
"""

from __future__ import annotations

import ssl

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from cube_stack.agent.errors import AgentSettingsError
from cube_stack.tls_identity import TlsIdentity
from cube_wire.spki import spki_sha256 as wire_spki_sha256

__all__ = ["TlsIdentity", "new_tls_identity", "peer_spki_der", "spki_der", "spki_sha256"]

SpkiSource = TlsIdentity | x509.Certificate | CertificatePublicKeyTypes | bytes


def new_tls_identity(hostnames: tuple[str, ...], *, days: int = 30) -> TlsIdentity:
    """Create the proxy's in-memory TLS key pair and self-signed certificate (the proxy's own generator)."""
    return TlsIdentity.generate(hostnames, days=days)


def spki_der(source: SpkiSource) -> bytes:
    """Return the DER SubjectPublicKeyInfo of an identity, a certificate (object, PEM or DER) or a key."""
    if isinstance(source, TlsIdentity):
        return source.spki_der
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                source = x509.load_pem_x509_certificate(data)
            else:
                source = x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise AgentSettingsError(
                "spki source", f"found bytes that are not a certificate ({exc})"
            ) from None
    public = source.public_key() if isinstance(source, x509.Certificate) else source
    try:
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (AttributeError, TypeError, ValueError):
        raise AgentSettingsError(
            "spki source", f"found {type(source).__name__}, wanted a TlsIdentity, certificate or public key"
        ) from None


def spki_sha256(source: SpkiSource) -> str:
    """Return the lower-case hex SHA-256 of the DER SPKI (the ``binding.spki_sha256`` of a document)."""
    return wire_spki_sha256(spki_der(source))


def peer_spki_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> bytes:
    """Return the DER SPKI of the peer certificate of a live TLS connection."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        raise AgentSettingsError("ssl_object", "found a connection without a peer certificate")
    return spki_der(der)
