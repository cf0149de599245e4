"""Ed25519 signing keys: generation, RFC 7638 key ids, PEM round trips and the JWKS document.

A :class:`KeyRing` holds the one *active* key (signs new tokens) and the keys that still verify (the
active one and the previous, *retiring* one), so a rotation never invalidates tokens already issued.
The ``signing_keys`` table holds each key's kid, state and *public* key, which is all verification
needs; the private key lives only in memory and in its own file (``keyfiles.py``). Nothing here logs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
ACTIVE = "active"
RETIRING = "retiring"
RETIRED = "retired"


def b64url(data: bytes) -> str:
    """Encode bytes as unpadded base64url, as JWK and JWS do."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(x: str) -> str:
    """Return the RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 public key's ``x``."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key pair with its kid and rotation state."""

    kid: str
    state: str
    public_key: Ed25519PublicKey
    private_key: Ed25519PrivateKey | None = field(default=None, repr=False)

    @property
    def x(self) -> str:
        """Return the base64url raw public key (the JWK ``x`` member)."""
        return b64url(_raw_public(self.public_key))

    def jwk(self) -> dict[str, str]:
        """Return the public JWK, in the member order SuperMQ serves."""
        return {"kid": self.kid, "kty": "OKP", "alg": ALGORITHM, "use": "sig", "crv": "Ed25519", "x": self.x}


def generate_signing_key(state: str = ACTIVE) -> SigningKey:
    """Create a fresh Ed25519 key pair whose kid is its thumbprint."""
    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    return SigningKey(
        kid=thumbprint(b64url(_raw_public(public_key))),
        state=state,
        public_key=public_key,
        private_key=private_key,
    )


def private_pem(key: SigningKey) -> bytes:
    """Serialise the private key as unencrypted PKCS#8 PEM, for its key file."""
    if key.private_key is None:
        raise ValueError("signing key has no private part")
    return key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_signing_key(kid: str, state: str, x: str) -> SigningKey:
    """Rebuild the public half of a stored key from its JWK ``x``; the kid must be its thumbprint."""
    try:
        public_key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    except ValueError:
        raise ValueError(f"signing key {kid}: the stored public key is not an Ed25519 key") from None
    if thumbprint(x) != kid:
        raise ValueError(f"signing key {kid}: the stored public key does not match its kid")
    return SigningKey(kid=kid, state=state, public_key=public_key)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """Parse a PKCS#8 PEM Ed25519 private key; raise ``ValueError`` for anything else."""
    try:
        private_key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return private_key


def key_from_pem(pem: bytes, state: str) -> SigningKey:
    """Return the key in an Ed25519 PEM (private PKCS#8, or public SPKI) with its thumbprint as kid."""
    if b"PRIVATE KEY" in pem:
        private_key = load_private_key(pem)
        public_key = private_key.public_key()
        kid = thumbprint(b64url(_raw_public(public_key)))
        return SigningKey(kid=kid, state=state, public_key=public_key, private_key=private_key)
    try:
        loaded = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ValueError("not a PEM Ed25519 private or public key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return SigningKey(kid=thumbprint(b64url(_raw_public(loaded))), state=state, public_key=loaded)


def with_private(key: SigningKey, private_key: Ed25519PrivateKey) -> SigningKey:
    """Return ``key`` with its private half; raise ``ValueError`` when the two do not belong together."""
    if _raw_public(private_key.public_key()) != _raw_public(key.public_key):
        raise ValueError(f"the private key does not match the public key of {key.kid}")
    return SigningKey(kid=key.kid, state=key.state, public_key=key.public_key, private_key=private_key)


@dataclass(frozen=True)
class KeyRing:
    """The active signing key and every key that may verify a token, by kid."""

    active: SigningKey
    verifiers: dict[str, SigningKey]

    @classmethod
    def from_keys(cls, keys: list[SigningKey]) -> KeyRing:
        """Build a ring from stored keys (exactly one active; retired keys are dropped).

        The active key carries its private half only when the caller attached it (:func:`with_private`).
        """
        active = [k for k in keys if k.state == ACTIVE]
        if len(active) != 1:
            raise ValueError(f"expected exactly one active signing key, found {len(active)}")
        return cls(active=active[0], verifiers={k.kid: k for k in keys if k.state in (ACTIVE, RETIRING)})

    def with_active(self, key: SigningKey) -> KeyRing:
        """Return this ring with ``key`` (the active key, now with its private half) in place."""
        return KeyRing(active=key, verifiers={**self.verifiers, key.kid: key})

    def jwks(self) -> dict[str, Any]:
        """Return the JWKS document: the active key first, then the retiring ones."""
        ordered = [self.active] + [k for k in self.verifiers.values() if k.kid != self.active.kid]
        return {"keys": [k.jwk() for k in ordered]}
