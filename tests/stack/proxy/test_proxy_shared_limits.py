"""Issue 12, point 3: rate limits shared by several proxies through Redis, and what happens without it.

Each test starts a ``redis-server`` of its own (the machine's Redis is never touched). The unit tests
drive :class:`SharedRateLimiter` in this process, one :class:`SharedLimits` per simulated proxy; the
end-to-end test runs two real ``python -m cube_stack.proxy`` processes in front of one Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cube_proxy_testkit import AuthStack, bearer
from process_kit import ProxyProcess, RedisServer, free_port, needs_redis, proxy_env
from redis.asyncio import Redis

from cube_stack.proxy import ProxySettings, ProxySettingsError
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.proxy.ratelimit import RateLimiter
from cube_stack.proxy.shared_limits import (
    ADDRESS_PREFIX,
    USER_PREFIX,
    SharedLimits,
    SharedRateLimiter,
    address_hasher,
)

pytestmark = needs_redis

SECRET = b"k" * 32
NO_REFILL = 0.001  # per minute: nothing comes back within a test


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def proxy_limits(url: str, **options: float) -> AsyncIterator[SharedLimits]:
    """One proxy's view of Redis: a started :class:`SharedLimits`, closed at the end."""
    shared = SharedLimits(url, timeout=options.pop("timeout", 0.1), **options)
    await shared.start()
    try:
        yield shared
    finally:
        await shared.aclose()


def user_limiter(
    shared: SharedLimits, *, burst: int, lease: int, per_minute: float = NO_REFILL
) -> SharedRateLimiter:
    local = RateLimiter(per_minute=per_minute, burst=burst, max_users=100, clock=time.monotonic)
    return SharedRateLimiter(
        shared,
        per_minute=per_minute,
        burst=burst,
        max_keys=100,
        lease=lease,
        prefix=USER_PREFIX,
        fallback=local,
    )


async def test_two_proxies_share_one_exact_limit(redis_server: RedisServer) -> None:
    async with proxy_limits(redis_server.url) as one, proxy_limits(redis_server.url) as two:
        a, b = user_limiter(one, burst=5, lease=1), user_limiter(two, burst=5, lease=1)
        answers = [await (a if i % 2 == 0 else b).take("user-1") for i in range(5)]
        assert answers == [0.0] * 5
        assert await a.take("user-1") > 0 and await b.take("user-1") > 0  # the 6th, wherever it lands
        assert await a.take("user-2") == 0.0  # another user has a bucket of their own
        assert one.stats.fallbacks == two.stats.fallbacks == 0


async def test_leases_spare_round_trips_and_never_exceed_the_limit(redis_server: RedisServer) -> None:
    async with proxy_limits(redis_server.url) as one, proxy_limits(redis_server.url) as two:
        busy = user_limiter(one, burst=100, lease=8)
        allowed = [await busy.take("busy") for _ in range(101)]
        assert allowed[:100] == [0.0] * 100 and allowed[100] > 0  # alone on one proxy: exact
        assert one.stats.round_trips <= 25  # leases of up to 8: far fewer round trips than requests

        rng = random.Random(12)
        a, b = user_limiter(one, burst=40, lease=8), user_limiter(two, burst=40, lease=8)
        outcomes = [await rng.choice((a, b)).take("mixed") for _ in range(80)]
        granted = outcomes.count(0.0)
        assert granted <= 40  # the shared bucket is never overdrawn
        assert granted >= 40 - 2 * 7  # at most lease - 1 left unspent per proxy


async def test_concurrent_requests_of_one_user_share_round_trips(redis_server: RedisServer) -> None:
    async with proxy_limits(redis_server.url) as one:
        limiter = user_limiter(one, burst=30, lease=8)
        async with asyncio.timeout(10):
            waits = await asyncio.gather(*(limiter.take("u") for _ in range(40)))
        assert waits.count(0.0) == 30 and all(wait > 0 for wait in waits if wait)
        assert one.stats.round_trips < 30


async def test_near_the_limit_leases_shrink_so_alternating_proxies_get_it_exactly(
    redis_server: RedisServer,
) -> None:
    async with proxy_limits(redis_server.url) as one, proxy_limits(redis_server.url) as two:
        a, b = user_limiter(one, burst=4, lease=8), user_limiter(two, burst=4, lease=8)
        answers = [await (a if i % 2 == 0 else b).take("u") for i in range(6)]
        assert answers[:4] == [0.0] * 4 and all(wait > 0 for wait in answers[4:])


async def test_a_refusal_is_cached_for_the_wait_redis_named(redis_server: RedisServer) -> None:
    async with proxy_limits(redis_server.url) as one:
        limiter = user_limiter(one, burst=1, lease=1, per_minute=60)  # one token a second
        assert await limiter.take("u") == 0.0
        first = await limiter.take("u")
        trips = one.stats.round_trips
        again = await limiter.take("u")
        assert 0 < again <= first <= 1.0
        assert one.stats.round_trips == trips  # answered locally


async def test_redis_sees_user_ids_and_counters_only(redis_server: RedisServer) -> None:
    async with proxy_limits(redis_server.url) as one, proxy_limits(redis_server.url) as two:
        users = user_limiter(one, burst=3, lease=1)
        local = RateLimiter(per_minute=NO_REFILL, burst=1, max_users=10, clock=time.monotonic)

        def address_limiter(shared: SharedLimits) -> SharedRateLimiter:
            return SharedRateLimiter(
                shared,
                per_minute=NO_REFILL,
                burst=1,
                max_keys=10,
                lease=1,
                prefix=ADDRESS_PREFIX,
                fallback=local,
                key_of=address_hasher(SECRET),
            )

        await users.take("5d0c-user-id")
        assert await address_limiter(one).take("203.0.113.77") == 0.0
        assert await address_limiter(two).take("203.0.113.77") > 0  # same address, other proxy: shared
        assert await address_limiter(two).take("2001:db8:1:2::99") == 0.0
        assert await address_limiter(one).take("2001:db8:1:2::aa") > 0  # one /64, one bucket

        client = Redis.from_url(redis_server.url)
        try:
            dump = {}
            async for key in client.scan_iter("*"):
                dump[key.decode()] = {k.decode(): v.decode() for k, v in (await client.hgetall(key)).items()}
        finally:
            await client.aclose()
        assert f"{USER_PREFIX}5d0c-user-id" in dump
        assert all(key.startswith((USER_PREFIX, ADDRESS_PREFIX)) for key in dump)
        assert all(set(fields) == {"n", "t"} for fields in dump.values())
        text = json.dumps(dump)
        for address in ("203.0.113.77", "2001:db8", "203.0.113"):
            assert address not in text


def test_settings_refuse_redis_without_an_address_key_or_with_another_scheme() -> None:
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings(redis_url="redis://127.0.0.1:6379/0")
    assert caught.value.field == "redis_address_key"
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings(redis_url="http://user:hunter2@127.0.0.1:6379", redis_address_key="x" * 32)
    assert caught.value.field == "redis_url" and "hunter2" not in caught.value.message
    with pytest.raises(ProxySettingsError) as caught:
        ProxySettings.from_env(
            {
                "CUBE_PROXY_REDIS_URL": "redis://h",
                "CUBE_PROXY_REDIS_ADDRESS_KEY": "x" * 32,
                "CUBE_PROXY_REDIS_LEASE": "0",
            }
        )
    assert caught.value.field == "redis_lease"
    assert "hunter2" not in repr(ProxySettings(redis_url="redis://:hunter2@h", redis_address_key="x" * 32))


async def test_a_dead_redis_falls_back_to_local_limits_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(free_port())  # not started yet: Redis is down when the proxy starts
    metrics = ProxyMetrics()
    async with proxy_limits(server.url, reconnect_first=0.05) as shared:
        metrics.shared_limits = shared.stats
        limiter = user_limiter(shared, burst=2, lease=1)
        assert not shared.up and "cube_proxy_shared_limits_up 0" in metrics.render()
        assert [await limiter.take("u") for _ in range(3)][2] > 0  # per-process limits still hold
        assert shared.stats.fallbacks == 3
        server.start()
        try:
            async with asyncio.timeout(30):
                await shared.wait_up()
            assert await limiter.take("u") == 0.0  # Redis's bucket is fresh
            assert shared.stats.round_trips == 1 and "cube_proxy_shared_limits_up 1" in metrics.render()

            server.stop()  # lost mid-run
            started = time.monotonic()
            assert [await limiter.take("other") for _ in range(3)] == [
                0.0,
                0.0,
                pytest.approx(60 / NO_REFILL, rel=0.01),
            ]
            assert time.monotonic() - started < 1.0  # a refused connection: no waiting on Redis
            assert "cube_proxy_shared_limits_up 0" in metrics.render()
        finally:
            server.stop()
    downs = [r for r in caplog.records if getattr(r, "event", "") == "proxy.shared_limits_down"]
    ups = [r for r in caplog.records if getattr(r, "event", "") == "proxy.shared_limits_up"]
    assert len(downs) == 2 and len(ups) == 1  # once per outage, once when back; not once per request
    assert shared.stats.outages == 2


async def test_a_redis_that_never_answers_costs_a_request_one_timeout_at_most() -> None:
    with socket.socket() as silent:  # accepts connections into its backlog, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        async with proxy_limits(url, timeout=0.2) as shared:
            assert not shared.up  # the start-up ping timed out
            limiter = user_limiter(shared, burst=5, lease=1)
            started = time.monotonic()
            assert await limiter.take("u") == 0.0
            assert time.monotonic() - started < 0.2  # already known to be down: no wait at all
        hung = SharedLimits(url, timeout=0.2)
        hung.stats.up = True  # as if it had answered until now
        try:
            limiter = user_limiter(hung, burst=5, lease=1)
            started = time.monotonic()
            assert await limiter.take("u") == 0.0  # decided locally once the timeout passed
            assert 0.2 <= time.monotonic() - started < 1.0  # the timeout, not a hang
            assert not hung.up
        finally:
            await hung.aclose()


# --- two real proxy processes -------------------------------------------------------------------------

BURST = 4
METRIC = re.compile(r"^(cube_proxy_shared_limits_\w+) (\d+)$", re.M)


@pytest.mark.slow
async def test_two_proxy_processes_share_a_users_limit_and_survive_redis_going_away(
    tmp_path: Path, stack: AuthStack, redis_server: RedisServer
) -> None:
    common = {
        "auth_url": stack.url,
        "ollama_url": "http://127.0.0.1:9",  # nothing listens: an allowed request gets 502, a refused 429
        "tls": "false",
        "rate_limit_per_minute": str(NO_REFILL),
        "rate_limit_burst": str(BURST),
        "attestation_rate_per_minute": str(NO_REFILL),
        "attestation_burst": "2",
        "redis_url": redis_server.url,
        "redis_address_key": SECRET.decode(),
    }
    if grpc_target := getattr(stack, "grpc_target", ""):  # PATs and permissions over auth.v1 gRPC
        common["auth_grpc"] = grpc_target
    proxies = [ProxyProcess(proxy_env(tmp_path / f"agent{i}", **common)) for i in range(2)]
    try:
        for proxy in proxies:
            proxy.wait_listening()
            proxy.log.wait_for("proxy.shared_limits_up", timeout=10)  # the lifespan's first ping
        async with httpx.AsyncClient(timeout=10) as client:

            async def generate(proxy: ProxyProcess, token: str = stack.bob.access_token) -> int:
                response = await client.post(
                    f"{proxy.url}/{stack.domain}/api/generate",
                    headers=bearer(token),
                    json={"model": "m", "prompt": "SECRET-PROMPT-do-not-store", "stream": False},
                )
                return response.status_code

            async def metrics(proxy: ProxyProcess) -> dict[str, int]:
                text = (await client.get(f"{proxy.url}/metrics")).text
                return {name: int(value) for name, value in METRIC.findall(text)}

            async def attest(proxy: ProxyProcess) -> int:
                body = {"nonce": "ab" * 32}
                return (await client.post(f"{proxy.url}/{stack.domain}/attestation", json=body)).status_code

            # The attestation route's per-address limit is shared too: 2 for 127.0.0.1 across both.
            assert [await attest(proxies[0]), await attest(proxies[1])] == [200, 200]
            assert await attest(proxies[0]) == 429 and await attest(proxies[1]) == 429

            statuses = [await generate(proxies[i % 2]) for i in range(BURST)]
            assert 429 not in statuses, statuses
            assert await generate(proxies[0]) == 429 and await generate(proxies[1]) == 429  # N+1, both ways

            inspector = Redis.from_url(redis_server.url)
            try:
                keys = [key.decode() async for key in inspector.scan_iter("*")]
                values = [await inspector.hgetall(key) for key in keys]
            finally:
                await inspector.aclose()
            assert sorted(key[: len(ADDRESS_PREFIX)] for key in keys) == [ADDRESS_PREFIX, USER_PREFIX]
            assert f"{USER_PREFIX}{stack.bob.id}" in keys
            stored = repr(keys) + repr(values)
            assert "127.0.0.1" not in stored  # the address only as an HMAC
            assert "SECRET-PROMPT" not in stored and stack.bob.access_token not in stored

            redis_server.stop()  # bob stays refused (his refusal is cached); alice goes on per process
            statuses = [await generate(proxies[i % 2], stack.alice.access_token) for i in range(2 * BURST)]
            assert 429 not in statuses, statuses  # BURST per proxy now: the limit is per process
            assert await generate(proxies[0], stack.alice.access_token) == 429
            for proxy in proxies:
                proxy.log.wait_for("proxy.shared_limits_down", timeout=5)
                seen = await metrics(proxy)
                assert seen["cube_proxy_shared_limits_up"] == 0
                assert seen["cube_proxy_shared_limits_fallback_total"] >= 1
    finally:
        for proxy in proxies:
            assert proxy.stop() == 0
