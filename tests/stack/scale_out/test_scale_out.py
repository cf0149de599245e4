"""Issue 12, acceptance: the deployment of server-stack/deploy/ as real processes, clients through HAProxy.

One topology serves the module (see :mod:`scale_out_kit`): PostgreSQL-backed ``cube-stack auth serve``,
the built-in runtime (RANDOM-WEIGHTS demo model, real llama.cpp), two ``python -m cube_stack.proxy``
with TLS and SIMULATED agents, a Redis they share limits through, and HAProxy in ``mode tcp`` with
``send-proxy-v2`` in front, made from the shipped haproxy.cfg. The clients are the real ones: the
``cube complete`` CLI with a PAT and the ``cube-lsp`` server (driven by pytest-lsp) with a JWT, both
attesting in mode ``simulated`` against the client policy the proxies wrote.

The tests run in file order and share the topology: each outage test puts back what it stopped
(Redis, the auth service), and the one that kills a proxy comes last. Every user whose requests are
counted has a rate-limit budget of their own (:meth:`Topology.add_member`).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from lsprotocol import types
from process_kit import RedisServer
from pytest_lsp import ClientServerConfig, LanguageClient
from scale_out_kit import (
    DEMO_MODEL,
    Proxy,
    RuntimeProcess,
    Topology,
    needs_balancer,
    running_topology,
    through_balancer,
)
from standalone_kit import AuthProcess, code_of, poll

from tests.e2e.conftest import INLINE_CAPABILITIES, Session

pytestmark = [
    pytest.mark.slow,
    needs_balancer,
]

BURST = 12  # requests one user may make before the (negligible) refill: small enough to exhaust
PROXY_SETTINGS = {
    "RATE_LIMIT_BURST": str(BURST),
    "RATE_LIMIT_PER_MINUTE": "0.001",  # nothing comes back within the run
    "DECISION_TTL": "1",
}
SOURCE = "def add(a, b):\n    return \n"
OTHER_SOURCE = "def mul(a, b):\n    return \n"
URI = "file:///work/demo/calc.py"
OTHER_URI = "file:///work/demo/ops.py"
ATTESTATION = "/{domain_id}/attestation"
GENERATE = "/{domain_id}/api/generate"
TAGS = "/{domain_id}/api/tags"
SHARED_LIMITS_DOWN = re.compile(r"proxy\.shared_limits_down")
SHARED_LIMITS_BACK = re.compile(r"proxy\.shared_limits_up Redis is back")


@pytest.fixture(scope="module")
def topology(
    runtime: RuntimeProcess, agent_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("scale-out")
    with running_topology(runtime.url, agent_state, workdir, PROXY_SETTINGS) as running:
        yield running


def cube_complete(settings: Path, location: str) -> subprocess.CompletedProcess[str]:
    """Run the real `cube complete` CLI."""
    return subprocess.run(
        [sys.executable, "-m", "cube_lsp.cli", "complete", "--settings", str(settings), location],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _records(proxy: Proxy, user_id: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in proxy.audit()
        if (user_id is None or r["user_id"] == user_id) and (route is None or r["route"] == route)
    ]


def _first(records: list[dict[str, Any]], route: str) -> int:
    return next(i for i, r in enumerate(records) if r["route"] == route)


# --------------------------------------------------------------------------------------------- clients


def test_cube_complete_with_a_pat_attests_each_proxy_before_sending_code(
    topology: Topology, tmp_path: Path
) -> None:
    source = tmp_path / "calc.py"
    source.write_text(SOURCE)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(topology.settings(topology.pat)))

    # Each run is a new client on a new connection: the balancer sends the two runs to the two proxies.
    for _ in topology.proxies:
        done = cube_complete(settings, f"{source}:2:12")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()  # random weights, but a real completion through every part
        assert "SIMULATED attestation" in done.stderr
        assert "[attestation." not in done.stderr and "[proxy." not in done.stderr

    for proxy in topology.proxies:
        proxy.wait_until(lambda p=proxy: bool(_records(p, route=GENERATE)))
        records = proxy.audit()
        routes = [r["route"] for r in records]
        assert ATTESTATION in routes and GENERATE in routes, (proxy.name, routes)
        # The key this proxy made was attested (a nonce, no token) before any code reached it.
        assert _first(records, ATTESTATION) < _first(records, GENERATE), (proxy.name, routes)
        assert records[_first(records, ATTESTATION)]["user_id"] is None
        generated = records[_first(records, GENERATE)]
        assert generated["status"] == 200 and generated["stream"] is True


# --------------------------------------------------------------------------------------------- limits


def test_a_users_limit_holds_across_both_proxies(topology: Topology) -> None:
    carol = topology.add_member("carol")
    answers = [
        through_balancer(topology, "GET", "/api/tags", carol.jwt).status_code for _ in range(BURST + 2)
    ]
    assert answers == [200] * BURST + [429, 429]
    for proxy in topology.proxies:  # each proxy served part of the budget and refused once
        proxy.wait_until(lambda p=proxy: any(r["status"] == 429 for r in _records(p, carol.user_id)))
        served = [r["status"] for r in _records(proxy, carol.user_id)]
        assert 0 < served.count(200) < BURST and served.count(429) == 1, (proxy.name, served)
        assert proxy.metric("cube_proxy_shared_limits_up") == 1


def test_without_redis_requests_flow_with_per_process_limits(topology: Topology) -> None:
    assert topology.redis is not None
    port = topology.redis.port
    marks = {p.name: len(p.lines) for p in topology.proxies}
    topology.redis.stop()
    try:
        dave = topology.add_member("dave")
        answers = [
            through_balancer(topology, "GET", "/api/tags", dave.jwt).status_code for _ in range(2 * BURST + 2)
        ]
        # Each proxy now allows the whole burst on its own: twice the shared limit, then refusals.
        assert answers.count(200) == 2 * BURST, answers
        for proxy in topology.proxies:
            proxy.wait_until(lambda p=proxy: p.logged(SHARED_LIMITS_DOWN, since=marks[p.name]))
            proxy.wait_until(
                lambda p=proxy: [r["status"] for r in _records(p, dave.user_id)].count(200) >= BURST
            )
            served = [r["status"] for r in _records(proxy, dave.user_id)]
            assert served.count(200) == BURST, (proxy.name, served)
            assert proxy.metric("cube_proxy_shared_limits_up") == 0
            assert proxy.metric("cube_proxy_shared_limits_fallback_total") >= BURST
    finally:
        marks = {p.name: len(p.lines) for p in topology.proxies}
        topology.redis = RedisServer(port).start()  # the same address: the proxies find it again
    for proxy in topology.proxies:  # retried in the background, 0.5 s doubling
        since = marks[proxy.name]
        proxy.wait_until(lambda p=proxy, n=since: p.logged(SHARED_LIMITS_BACK, since=n), timeout=60)
        assert proxy.metric("cube_proxy_shared_limits_up") == 1


# --------------------------------------------------------------------------------------------- auth


def _poll_each_proxy(topology: Topology, token: str, status: int) -> None:
    """Send requests through the balancer until every proxy has answered one, from now on, with ``status``.

    (A refused request has no user in the audit log: the guard names the user once it is authorised.)
    """
    starts = {p.name: len(p.audit()) for p in topology.proxies}

    def every_proxy_done(_: httpx.Response) -> bool:
        return all(
            any(r["route"] == TAGS and r["status"] == status for r in p.audit()[starts[p.name] :])
            for p in topology.proxies
        )

    poll(lambda: through_balancer(topology, "GET", "/api/tags", token), every_proxy_done, timeout=20)


def test_an_auth_outage_gives_503_once_decisions_expire_then_service_returns(topology: Topology) -> None:
    erin = topology.add_member("erin")
    answers = [through_balancer(topology, "GET", "/api/tags", erin.jwt).status_code for _ in range(2)]
    assert answers == [200, 200]  # both proxies hold an allow decision for erin now
    auth = topology.auth
    assert auth is not None
    assert auth.stop() == 0

    # Cached decisions serve until they expire (1 s), then every proxy answers 503.
    down = poll(
        lambda: through_balancer(topology, "GET", "/api/tags", erin.jwt), lambda r: r.status_code != 200, 20
    )
    assert down.status_code == 503 and code_of(down) == "cube_proxy.auth_unavailable", down.text
    _poll_each_proxy(topology, erin.jwt, 503)

    # Back on the same addresses: every proxy serves again (gRPC reconnects within about 2 s).
    topology.auth = AuthProcess.serve([*topology.db, "--signing-key", str(topology.key), *auth.listen_args])
    _poll_each_proxy(topology, erin.jwt, 200)
    assert through_balancer(topology, "GET", "/api/tags", topology.pat).status_code == 200


# --------------------------------------------------------------------------------------------- cube-lsp


class StatusLog:
    """Every ``cube/status`` notification the server sent, and the keys it pinned, in order."""

    def __init__(self) -> None:
        self.statuses: list[Any] = []
        self._changed = asyncio.Event()

    def record(self, params: Any) -> None:
        self.statuses.append(params)
        self._changed.set()

    @property
    def pins(self) -> list[str]:
        """Return the keys the client attested, in order (each status that pinned another one)."""
        pins: list[str] = []
        for status in self.statuses:
            attestation = getattr(status, "attestation", None)
            key = getattr(attestation, "pinned_key_sha256", None)
            if key and (not pins or pins[-1] != key):
                pins.append(key)
        return pins

    async def wait_any(self) -> None:
        """Return once a status came (the server sends one when its settings are applied)."""
        async with asyncio.timeout(30):
            while not self.statuses:
                self._changed.clear()
                await self._changed.wait()

    async def wait_pins(self, count: int) -> list[str]:
        """Return the pins once there are ``count`` of them (fail after 30 s)."""
        async with asyncio.timeout(30):
            while len(self.pins) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.pins


@pytest_asyncio.fixture
async def lsp() -> AsyncIterator[tuple[LanguageClient, StatusLog]]:
    """The real cube-lsp (python -m cube_lsp) with a pytest-lsp client that keeps every ``cube/status``."""
    config = ClientServerConfig(server_command=[sys.executable, "-m", "cube_lsp", "--log-level", "WARNING"])
    client = await config.start()
    log = StatusLog()

    @client.feature("cube/status")
    def on_status(params: Any) -> None:  # pygls marks the function it registers: not a bound method
        log.record(params)

    try:
        yield client, log
    finally:
        if client.error is None:
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()


def _assert_attested_before_code(proxy: Proxy, user_id: str, *, since: int) -> None:
    """Assert that, after record ``since``, ``proxy`` answered an attestation before any request of
    ``user_id``, and that the first of those was a generation (the code)."""
    proxy.wait_until(lambda: any(r["user_id"] == user_id for r in proxy.audit()[since:]))
    records = proxy.audit()[since:]
    first = next(i for i, r in enumerate(records) if r["user_id"] == user_id)
    assert records[first]["route"] == GENERATE and records[first]["status"] == 200, records
    assert any(r["route"] == ATTESTATION and r["status"] == 200 for r in records[:first]), records


async def test_cube_lsp_with_a_jwt_survives_a_proxy_killed_mid_run(
    topology: Topology, lsp: tuple[LanguageClient, StatusLog]
) -> None:
    client, log = lsp
    frank = topology.add_member("frank")
    await client.initialize_session(
        types.InitializeParams(
            capabilities=INLINE_CAPABILITIES,
            initialization_options=topology.settings(frank.jwt),
        )
    )
    await log.wait_any()
    marks = {p.name: len(p.audit()) for p in topology.proxies}  # what came before this client
    session = Session(client)
    session.open(URI, SOURCE)
    first = await session.inline(URI, 1, len("    return "))
    assert first.items and first.items[0].insert_text
    pins = await log.wait_pins(1)
    by_key = {p.spki: p for p in topology.proxies}
    met = by_key[pins[0]]  # the key it attested is the one a proxy logged at its start
    _assert_attested_before_code(met, frank.user_id, since=marks[met.name])

    # The proxy it talks to dies; the balancer marks it down, the next completion meets the other key,
    # attests it (a status with the new pin) and is answered there.
    assert met.kill() == -9
    assert topology.balancer is not None
    topology.balancer.log.wait_for(rf"Server cube_proxies/{met.name} is DOWN", timeout=30)
    other = next(p for p in topology.proxies if p is not met)
    session.open(OTHER_URI, OTHER_SOURCE)  # another document: no cached completion can answer
    again = await session.inline(OTHER_URI, 1, len("    return "))
    assert again.items and again.items[0].insert_text
    assert await log.wait_pins(2) == [met.spki, other.spki]
    _assert_attested_before_code(other, frank.user_id, since=marks[other.name])
    assert log.statuses[-1].attestation.state == "simulated"

    # And plain requests keep succeeding, all on the survivor.
    show = {"model": DEMO_MODEL}
    answers = [through_balancer(topology, "POST", "/api/show", topology.pat, json=show) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    other.wait_until(lambda: len(_records(other, route="/{domain_id}/api/show")) == 2)
