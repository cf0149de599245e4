"""Login back-off: counters of failed logins per account and per client address, in memory and bounded.

After ``threshold`` consecutive failures for one key, every further attempt is refused for a delay that
starts at ``base`` and doubles with each further failure, up to ``cap``; a refused attempt is cheap (no
password hash is checked) and does not count, so a guesser cannot push a block further out than the
cap. Accounts get a short cap, so an attacker can keep a user waiting at most that long per guess;
addresses get a longer one. A success forgets the account's count; it takes back only its own attempt
from the address's count, so one valid account cannot wipe an address's record of guesses elsewhere.

An attempt is counted as failed when it is *admitted* (before the slow password check) and taken back
on success, so a burst of concurrent guesses cannot all slip through before the first one fails.
A count with no failure for ``forget_after`` (and no block still running) is dropped, and each table is
an LRU of at most ``max_entries`` keys. State is per process: replicas count separately.
Time comes from the injected clock; nothing here performs I/O or sees a password.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from cube_stack.auth.errors import TooManyAttemptsError
from cube_stack.auth.models import Clock
from cube_stack.auth.settings import AuthSettings

_ZERO = timedelta(0)
_MAX_DOUBLINGS = 40  # 2**40 seconds is far beyond any cap; stops the arithmetic growing


@dataclass(frozen=True)
class BackoffPolicy:
    """When one key starts backing off and how the delay grows."""

    threshold: int  # consecutive failures before the first delay; 0: never back off
    base: timedelta  # the first delay
    cap: timedelta  # the longest delay

    def delay(self, failures: int) -> timedelta:
        """Return how long to refuse after ``failures`` consecutive failures (zero below the threshold)."""
        if self.threshold == 0 or failures < self.threshold:
            return _ZERO
        doublings = min(failures - self.threshold, _MAX_DOUBLINGS)
        return min(self.base * (2**doublings), self.cap)


@dataclass
class _Count:
    failures: int
    last_failure: datetime
    blocked_until: datetime | None


class BackoffTable:
    """The failure counts of one kind of key (accounts or addresses) under one policy."""

    def __init__(self, policy: BackoffPolicy, *, forget_after: timedelta, max_entries: int) -> None:
        self.policy = policy
        self._forget_after = forget_after
        self._max = max_entries
        self._counts: OrderedDict[str, _Count] = OrderedDict()

    def __len__(self) -> int:
        return len(self._counts)

    def _current(self, key: str, now: datetime) -> _Count | None:
        count = self._counts.get(key)
        if count is None:
            return None
        blocked = count.blocked_until is not None and now < count.blocked_until
        if not blocked and now - count.last_failure >= self._forget_after:
            del self._counts[key]
            return None
        return count

    def wait(self, key: str, now: datetime) -> timedelta:
        """Return how much longer ``key`` is refused (zero when it may try now)."""
        count = self._current(key, now)
        if count is None or count.blocked_until is None or now >= count.blocked_until:
            return _ZERO
        return count.blocked_until - now

    def fail(self, key: str, now: datetime) -> None:
        """Count one failure for ``key``; at the threshold and beyond, start a delay."""
        if self.policy.threshold == 0:
            return
        count = self._current(key, now)
        if count is None:
            count = _Count(failures=0, last_failure=now, blocked_until=None)
            self._counts[key] = count
        count.failures += 1
        count.last_failure = now
        delay = self.policy.delay(count.failures)
        count.blocked_until = now + delay if delay else None
        self._counts.move_to_end(key)
        while len(self._counts) > self._max:
            self._counts.popitem(last=False)

    def take_back(self, key: str) -> None:
        """Undo one counted failure of ``key`` (an admitted attempt that succeeded)."""
        count = self._counts.get(key)
        if count is None:
            return
        count.failures -= 1
        if count.failures <= 0:
            del self._counts[key]
            return
        delay = self.policy.delay(count.failures)
        count.blocked_until = count.last_failure + delay if delay else None

    def forget(self, key: str) -> None:
        """Drop ``key``'s count (a successful login for an account)."""
        self._counts.pop(key, None)


class LoginThrottle:
    """Per-account and per-address back-off for password logins (see the module docstring)."""

    def __init__(
        self,
        *,
        account: BackoffPolicy,
        address: BackoffPolicy,
        forget_after: timedelta,
        max_entries: int,
        clock: Clock,
    ) -> None:
        self.accounts = BackoffTable(account, forget_after=forget_after, max_entries=max_entries)
        self.addresses = BackoffTable(address, forget_after=forget_after, max_entries=max_entries)
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: AuthSettings, clock: Clock) -> LoginThrottle:
        """Build the throttle the settings describe."""
        s = settings
        return cls(
            account=BackoffPolicy(
                s.login_backoff_account_threshold, s.login_backoff_base, s.login_backoff_account_cap
            ),
            address=BackoffPolicy(
                s.login_backoff_address_threshold, s.login_backoff_base, s.login_backoff_address_cap
            ),
            forget_after=s.login_backoff_forget_after,
            max_entries=s.login_backoff_entries,
            clock=clock,
        )

    def admit(self, *, account: str, address: str) -> None:
        """Let one login attempt through, counted as failed until :meth:`succeeded`; else raise 429.

        ``address`` may be empty (an in-process caller with no client address): only the account counts.
        """
        now = self._clock()
        wait = self.accounts.wait(account, now)
        if address:
            wait = max(wait, self.addresses.wait(address, now))
        if wait > _ZERO:
            raise TooManyAttemptsError(max(1, math.ceil(wait.total_seconds())))
        self.accounts.fail(account, now)
        if address:
            self.addresses.fail(address, now)

    def succeeded(self, *, account: str, address: str) -> None:
        """Record that an admitted attempt had the right password."""
        self.accounts.forget(account)
        if address:
            self.addresses.take_back(address)
