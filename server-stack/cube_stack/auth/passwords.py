"""Password hashing with argon2id (argon2-cffi), off the event loop.

Hashing is deliberately slow, so both calls run in a worker thread. A login for an unknown user still
verifies against a dummy hash so the response time does not reveal whether the account exists.
"""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    """argon2id with configurable cost; defaults come from :class:`AuthSettings` (OWASP's)."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """Return the encoded argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """Return whether ``password`` matches ``encoded``; ``None`` burns the same time and fails."""
        if encoded is None:
            if self._dummy is None:
                self._dummy = await self.hash("cube-auth-dummy-password")
            encoded = self._dummy
            password = password + "\x00"  # never matches the dummy
        try:
            return await asyncio.to_thread(self._hasher.verify, encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """Return whether ``encoded`` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except InvalidHashError:
            return True
