"""Personal access token strings: format, parsing and hashing.

A PAT is ``pat_<pat id, 32 hex>_<secret, 64 hex>``: the ``pat_`` prefix lets SuperMQ-style proxies route
it to ``Authenticate``; the id finds the row; the 256-bit secret makes a fast hash safe, so only the
SHA-256 of the whole string is stored and compared in constant time. The string is shown once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

from cube_stack.auth.errors import AuthenticationError

PREFIX = "pat_"
_FORMAT = re.compile(r"^pat_([0-9a-f]{32})_([0-9a-f]{64})$")


def looks_like_pat(token: str) -> bool:
    """Return whether a bearer token is meant as a PAT (by its prefix)."""
    return token.startswith(PREFIX)


def new_pat(pat_id: str) -> str:
    """Return a fresh PAT string for ``pat_id``."""
    return f"{PREFIX}{uuid.UUID(pat_id).hex}_{secrets.token_hex(32)}"


def parse_pat_id(token: str) -> str:
    """Return the canonical PAT id inside ``token``, or raise ``auth.invalid_token``."""
    match = _FORMAT.match(token)
    if match is None:
        raise AuthenticationError("malformed personal access token", code="auth.invalid_token")
    return str(uuid.UUID(match.group(1)))


def hash_pat(token: str) -> str:
    """Return the hex SHA-256 of a PAT string (what the database stores)."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def pat_matches(token: str, stored_hash: str) -> bool:
    """Return whether ``token`` hashes to ``stored_hash`` (constant time)."""
    return hmac.compare_digest(hash_pat(token), stored_hash)
