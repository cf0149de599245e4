"""A short-lived, bounded cache of allow decisions, keyed by token hash + domain + permission.

A warm request (same token, domain and route permission within ``ttl``) costs no auth round trip; when
the auth service is down, cached decisions keep working until they expire. Only allow decisions are
cached, so a new membership or scope takes effect at once, and a revocation within ``ttl``. The key holds
SHA-256 of the token, never the token; nothing here is ever logged.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cube_stack.proxy.authclient import Subject


def token_digest(token: str) -> bytes:
    """Return the SHA-256 of a bearer token (the cache key part; never logged)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class _Entry:
    subject: Subject
    expires_at: float


class DecisionCache:
    """An LRU of ``(token digest, domain, permission) -> Subject`` entries that expire after ``ttl``."""

    def __init__(self, *, ttl: float, max_entries: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[bytes, str, str], _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, digest: bytes, domain_id: str, permission: str) -> Subject | None:
        """Return the cached subject if the decision is still fresh."""
        key = (digest, domain_id, permission)
        entry = self._entries.get(key)
        if entry is None or self._clock() >= entry.expires_at:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.subject

    def put(
        self, digest: bytes, domain_id: str, permission: str, subject: Subject, *, not_after: float
    ) -> None:
        """Remember an allow decision for ``ttl`` seconds, never past ``not_after`` (token expiry)."""
        key = (digest, domain_id, permission)
        self._entries[key] = _Entry(subject, min(self._clock() + self._ttl, not_after))
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
