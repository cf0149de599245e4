"""The hash that names a TLS key on both sides: SHA-256 of its DER SubjectPublicKeyInfo.

The agent puts it in the attestation document's binding, the proxy logs it at start, and the client pins it.
"""

from __future__ import annotations

import hashlib

__all__ = ["spki_sha256"]


def spki_sha256(spki_der: bytes) -> str:
    """Return the lower-case hex SHA-256 of a DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der).hexdigest()
