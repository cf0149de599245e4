"""Rate limits shared by every proxy behind a balancer, through Redis (``CUBE_PROXY_REDIS_URL``).

Without it each proxy keeps its own buckets (:class:`~cube_stack.proxy.ratelimit.RateLimiter`), so N
proxies allow N times each limit. With it, one token bucket per user (and per client address for the
attestation route) lives in Redis and a Lua script refills and debits it atomically, on Redis's clock
(the proxies' clocks need not agree).

**Leases keep Redis off most requests.** A proxy does not ask Redis once per request: it takes a small
lease of tokens in one ``EVALSHA`` and spends them locally for at most :data:`LEASE_SECONDS`. A user's
lease starts at one token and doubles (up to ``lease``) each time one runs out while still fresh, so a
user sending now and then costs one round trip per request and a busy one about one per ``lease``
requests. The script never hands out more than half of what the bucket holds (at least one), so
leases shrink as a bucket empties. A refusal is cached for exactly the wait Redis named (no proxy can
put tokens back, so none appears earlier). Concurrent requests of one user on one proxy share a round
trip.

Bounds, per user (or address) and per proxy: the shared bucket is never debited beyond its limit, so
across all proxies no more than ``burst`` plus the refill are *taken*; a proxy may still spend up to
``lease - 1`` tokens it took up to :data:`LEASE_SECONDS` earlier (a short burst above the limit by at
most that much), and tokens left in a lease when it expires are lost (a user may be refused up to that
many requests early). ``lease = 1`` makes the limit exact, at one round trip per request.

**Redis sees user ids and counters only**: keys ``cube:rl:u:<user id>`` and ``cube:rl:a:<hash>``, each
a hash of two numbers (tokens, last refill in ms). Client addresses go in as HMAC-SHA256 under
``CUBE_PROXY_REDIS_ADDRESS_KEY`` (IPv6 by its /64), never in clear; tokens, prompts and code never.

**A dead Redis never stops the proxy.** A call that fails or takes longer than ``timeout`` marks Redis
down: every proxy then decides with its own buckets (as without Redis), logs one warning per outage,
counts those decisions in ``/metrics`` and reconnects in the background (0.5 s doubling to 30 s),
logging once when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cube_stack.proxy.ratelimit import RateLimiter
from cube_stack.serving import address_key

log = logging.getLogger(__name__)

LEASE_SECONDS = 1.0  # how long a proxy may spend tokens it took from the shared bucket
RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt after an outage
RECONNECT_MAX = 30.0  # the longest pause between attempts (the pause doubles up to it)
USER_PREFIX = "cube:rl:u:"
ADDRESS_PREFIX = "cube:rl:a:"

# KEYS[1]: the bucket; ARGV: refill per second, burst, tokens wanted. Returns {granted, wait in ms}.
# Time is Redis's own (TIME), so proxies with skewed clocks share one refill; a clock that steps back
# refills nothing. The key expires once the bucket would be full again (an absent bucket is full).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'n', 't')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = burst
  last = now
end
if now > last then
  tokens = math.min(burst, tokens + (now - last) * rate / 1000)
  last = now
end
local granted = 0
local wait = 0
if tokens >= 1 then
  granted = math.min(want, math.max(1, math.floor(tokens / 2)))
  tokens = tokens - granted
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'n', string.format('%.6f', tokens), 't', last)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {granted, wait}
"""


@dataclass
class SharedLimitsStats:
    """What ``/metrics`` says about the shared limits."""

    up: bool = False  # Redis answers; False: every proxy decides with its own buckets
    fallbacks: int = 0  # decisions made with per-process buckets because Redis was down
    round_trips: int = 0  # token-bucket script calls that Redis answered
    outages: int = 0  # times Redis was lost


class SharedLimits:
    """One Redis client, its health and the token-bucket script, for every shared limiter of a proxy."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        reconnect_first: float = RECONNECT_FIRST,
        redis: Redis | None = None,
    ) -> None:
        self._timeout = timeout
        self._reconnect_first = reconnect_first
        self._up = asyncio.Event()
        # No retries inside redis-py: a failure marks Redis down and the request goes on locally.
        self._redis = redis or Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._script = self._redis.register_script(TOKEN_BUCKET_LUA)
        self.stats = SharedLimitsStats()
        self._reconnect: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        """Return whether Redis decides (False: per-process buckets do)."""
        return self.stats.up

    async def start(self) -> None:
        """Check Redis once (bounded by the timeout); when it does not answer, start reconnecting."""
        if await self._ping():
            self._mark_up()
            log.info("proxy.shared_limits_up rate limits are shared through Redis", extra=_event("up"))
        else:
            self._lost("at start")

    async def wait_up(self) -> None:
        """Return once Redis answers (at once when it does now)."""
        await self._up.wait()

    def _mark_up(self) -> None:
        self.stats.up = True
        self._up.set()

    async def aclose(self) -> None:
        """Stop reconnecting and close the connections."""
        if self._reconnect is not None:
            self._reconnect.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnect
            self._reconnect = None
        await self._redis.aclose()

    async def lease(self, key: str, rate: float, burst: int, want: int) -> tuple[int, float] | None:
        """Take up to ``want`` tokens of bucket ``key``: (granted, seconds to wait); None if Redis is down."""
        if not self.stats.up:
            return None
        try:
            async with asyncio.timeout(self._timeout):
                granted, wait_ms = await self._script(keys=[key], args=[repr(rate), burst, want])
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost(type(exc).__name__)
            return None
        self.stats.round_trips += 1
        return int(granted), int(wait_ms) / 1000.0

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._redis.ping()
        except (RedisError, OSError, TimeoutError):
            return False
        return True

    def _lost(self, reason: str) -> None:
        was_up = self.stats.up
        self.stats.up = False
        self._up.clear()
        if was_up or self.stats.outages == 0:
            self.stats.outages += 1
            log.warning(
                "proxy.shared_limits_down reason=%s Redis is unreachable: each proxy enforces its own "
                "rate limits until it is back",
                reason,
                extra=_event("down"),
            )
        if self._reconnect is None or self._reconnect.done():
            self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        pause = self._reconnect_first
        while True:
            await asyncio.sleep(pause)  # a back-off between attempts, not a synchronisation
            if await self._ping():
                self._mark_up()
                log.warning(
                    "proxy.shared_limits_up Redis is back: rate limits are shared again", extra=_event("up")
                )
                return
            pause = min(pause * 2, RECONNECT_MAX)


def _event(state: str) -> dict[str, str]:
    return {"event": f"proxy.shared_limits_{state}"}


@dataclass
class _Lease:
    tokens: int = 0  # tokens taken from Redis and not yet spent
    expires: float = 0.0  # after this, what is left of the lease is dropped
    size: int = 1  # tokens the next round trip asks for
    refused_until: float = 0.0  # Redis said no token appears before this
    pending: asyncio.Future[None] | None = None  # a round trip in flight for this key
    waiting: int = 0  # requests of this key waiting for that round trip


class SharedRateLimiter:
    """A :class:`~cube_stack.proxy.ratelimit.Limiter` whose buckets live in Redis, leased in small batches."""

    def __init__(
        self,
        shared: SharedLimits,
        *,
        per_minute: float,
        burst: int,
        max_keys: int,
        lease: int,
        prefix: str,
        fallback: RateLimiter,
        key_of: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._rate = per_minute / 60.0
        self._burst = burst
        self._max = max_keys
        self._lease = lease
        self._prefix = prefix
        self._fallback = fallback
        self._key_of = key_of
        self._clock = clock
        self._leases: OrderedDict[str, _Lease] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Return whether limiting is on (``per_minute`` > 0)."""
        return self._rate > 0

    async def take(self, key: str) -> float:
        """Take one token for ``key``: locally from a fresh lease, else with one round trip to Redis."""
        if not self.enabled:
            return 0.0
        if not self._shared.up:
            return self._fall_back(key)
        name = self._prefix + self._key_of(key)
        lease = self._leases.get(name)
        if lease is None:
            lease = self._leases[name] = _Lease()
            while len(self._leases) > self._max:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(name)
        while lease.pending is not None:  # another request of this key is asking: share its answer
            lease.waiting += 1
            try:
                await asyncio.shield(lease.pending)
            finally:
                lease.waiting -= 1
        now = self._clock()
        if lease.tokens > 0 and now < lease.expires:
            lease.tokens -= 1
            return 0.0
        if now < lease.refused_until:
            return lease.refused_until - now
        return await self._ask(key, name, lease, now)

    async def _ask(self, key: str, name: str, lease: _Lease, now: float) -> float:
        # Ran dry while fresh: the key is busy here, ask for more next time; else start again at one.
        lease.size = min(self._lease, lease.size * 2) if lease.expires > now else 1
        if self._lease == 1:  # exact limits: each request asks for itself, nobody waits on another
            answer = await self._shared.lease(name, self._rate, self._burst, 1)
        else:
            # Requests already waiting for this answer spend their tokens at once: ask for them too
            # (what may stay unspent is still at most size - 1).
            want = lease.size + lease.waiting
            waiter = lease.pending = asyncio.get_running_loop().create_future()
            try:
                answer = await self._shared.lease(name, self._rate, self._burst, want)
            finally:
                lease.pending = None
                waiter.set_result(None)
        if answer is None:
            return self._fall_back(key)
        granted, wait = answer
        now = self._clock()
        if granted == 0:
            lease.tokens, lease.refused_until = 0, now + wait
            return wait
        lease.tokens, lease.expires = granted - 1, now + LEASE_SECONDS
        return 0.0

    def _fall_back(self, key: str) -> float:
        self._shared.stats.fallbacks += 1
        return self._fallback.acquire(key)


def address_hasher(secret: bytes) -> Callable[[str], str]:
    """Return the function that names a client address in Redis: HMAC-SHA256 of its key (IPv6: /64)."""

    def hashed(address: str) -> str:
        return hmac.new(secret, address_key(address).encode(), hashlib.sha256).hexdigest()[:32]

    return hashed
