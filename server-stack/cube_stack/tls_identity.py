"""The proxy's TLS identity: a key pair made at start, a self-signed certificate, and the SPKI to pin.

The private key is created in memory and never written to disk in the clear. Python's ``ssl`` module can
load a key only from a file path, so :meth:`TlsIdentity.ssl_context` hands it over through an anonymous
in-memory file (``memfd_create``, Linux, which a CVM always is) and, where that does not exist, through a
0600 temporary file that holds the key *encrypted* with a random in-memory password and is removed as soon
as the context has loaded it. Clients do not trust the certificate through a CA: they pin its
SubjectPublicKeyInfo (DER, or its SHA-256), which a later step binds to the CVM's attestation report.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _san(hostnames: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(names)


@dataclass(frozen=True)
class TlsIdentity:
    """A private key (memory only), its self-signed certificate and the SPKI clients pin."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    certificate: x509.Certificate

    @classmethod
    def generate(cls, hostnames: tuple[str, ...], *, days: int = 30) -> TlsIdentity:
        """Create a P-256 key pair and a self-signed certificate for ``hostnames``."""
        key = ec.generate_private_key(ec.SECP256R1())
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # A subject unique to the key: OpenSSL trusts only the first self-signed certificate with a
        # given subject in a CA bundle, so identical names would stop clients trusting a second proxy.
        cn = f"cube-proxy {hashlib.sha256(spki).hexdigest()[:16]}"
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(_san(hostnames), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(private_key=key, certificate=certificate)

    @property
    def spki_der(self) -> bytes:
        """Return the DER SubjectPublicKeyInfo of the key (what attestation binds and clients pin)."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def spki_sha256(self) -> str:
        """Return the hex SHA-256 of :attr:`spki_der`."""
        return hashlib.sha256(self.spki_der).hexdigest()

    @property
    def cert_pem(self) -> bytes:
        """Return the certificate in PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def ssl_context(self) -> ssl.SSLContext:
        """Return a server context (TLS 1.2+) holding this key and certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])
        password = secrets.token_bytes(32)
        key_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
        with _key_path(key_pem) as key_path, _key_path(self.cert_pem) as cert_path:
            context.load_cert_chain(cert_path, key_path, password=password)
        return context


@contextlib.contextmanager
def _key_path(data: bytes) -> Iterator[str]:
    """Yield a path that reads ``data``: an anonymous memfd if possible, else a 0600 temp file."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("cube-proxy-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="cube-proxy-", suffix=".pem")  # mkstemp creates it 0600
    try:
        os.write(fd, data)
        os.close(fd)
        fd = -1
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(path)
