"""Per-user token buckets: ``burst`` requests at once, refilled at ``per_minute`` / 60 per second.

Buckets are kept in a bounded LRU (an idle user's bucket would be full anyway, so dropping it loses
nothing). Time comes from the injected clock; a clock that steps backwards refills nothing.

:class:`Limiter` is what the guards ask: ``await take(key)``. :class:`RateLimiter` answers it in this
process; :class:`cube_stack.proxy.shared_limits.SharedRateLimiter` answers it for every proxy at once
through Redis, with a :class:`RateLimiter` as its fallback.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class Limiter(Protocol):
    """A rate limit keyed by a string (a user id, a client address)."""

    async def take(self, key: str) -> float:
        """Take one token for ``key``; return 0 if allowed, else the seconds until one is free."""
        ...


class RateLimiter:
    """Token-bucket rate limiting keyed by user id."""

    def __init__(self, *, per_minute: float, burst: int, max_users: int, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._max = max_users
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Return whether limiting is on (``per_minute`` > 0)."""
        return self._rate > 0

    def acquire(self, user_id: str) -> float:
        """Take one token for ``user_id``; return 0 if allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
            self._buckets[user_id] = bucket
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(0.0, now - bucket.updated_at)
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.updated_at = now
            self._buckets.move_to_end(user_id)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    async def take(self, key: str) -> float:
        """Take one token for ``key`` (:class:`Limiter`); the same as :meth:`acquire`."""
        return self.acquire(key)
