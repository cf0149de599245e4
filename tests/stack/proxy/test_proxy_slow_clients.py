"""Issue 8, findings 2 and 3, against the proxy as it runs in a CVM: ``python -m cube_stack.proxy`` over TLS.

One proxy process (SIMULATED attestation) serves the whole module, with small deadlines and caps set
through its ``CUBE_PROXY_*`` variables. Attackers connect from 127.0.0.2 and up, the normal client from
127.0.0.1; ``/metrics`` says what the proxy refused and why. On the code before the fix every test here
fails: slow connections were held for ever (asyncio's 60 s handshake deadline, no header deadline, no
cap), ``X-Forwarded-For`` from 127.0.0.1 picked the address the attestation limit counts, and a PROXY
header was only garbage before TLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cube_stack.serving import build_header
from cube_stack.serving.proxy_protocol import SIGNATURE
from tests.support.slow_clients import (
    Response,
    half_handshakes,
    half_headers,
    keep_asking,
    request,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs all of 127.0.0.0/8 on loopback")

LISTENING = re.compile(r"proxy\.listening url=https://127\.0\.0\.1:(\d+)")
ATTACKER = "127.0.0.2"
FORWARDER = "127.0.0.5"
BALANCER = "127.0.0.6"
NOT_A_BALANCER = "127.0.0.7"
VICTIM = "127.0.0.8"
PER_ADDRESS = 32
DEADLINE = 1.0
BURST = 3
DOMAIN = "acme"


@dataclass
class StandaloneProxy:
    port: int
    log: list[str]

    async def get(self, path: str, **kwargs: object) -> Response:
        return await request("127.0.0.1", self.port, path, tls=True, **kwargs)  # type: ignore[arg-type]

    async def attest(self, source: str, **kwargs: object) -> int:
        body = json.dumps({"nonce": secrets.token_hex(32)}).encode()
        answer = await request(
            "127.0.0.1",
            self.port,
            f"/{DOMAIN}/attestation",
            source=source,
            method="POST",
            headers={"Content-Type": "application/json", **kwargs.pop("headers", {})},  # type: ignore[dict-item]
            body=body,
            tls=True,
            **kwargs,  # type: ignore[arg-type]
        )
        return answer.status

    async def closed_counts(self) -> dict[str, int]:
        metrics = (await self.get("/metrics")).body.decode()
        return {
            match[1]: int(match[2])
            for match in re.finditer(r'cube_proxy_connections_closed_total\{reason="(\w+)"\} (\d+)', metrics)
        }


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneProxy]:
    """Run `python -m cube_stack.proxy` with small deadlines and caps; yield its port."""
    state = tmp_path_factory.mktemp("agent")
    env = os.environ | {
        "CUBE_PROXY_PORT": "0",
        "CUBE_PROXY_AUTH_URL": "http://127.0.0.1:9",  # no route here needs auth
        "CUBE_PROXY_OLLAMA_URL": "http://127.0.0.1:9",
        "CUBE_PROXY_ATTESTATION": "simulated",
        "CUBE_PROXY_ATTESTATION_STATE_DIR": str(Path(state)),
        "CUBE_PROXY_ATTESTATION_RATE_PER_MINUTE": "0.001",  # no refill within the test
        "CUBE_PROXY_ATTESTATION_BURST": str(BURST),
        "CUBE_PROXY_HANDSHAKE_TIMEOUT": str(DEADLINE),
        "CUBE_PROXY_HEADER_TIMEOUT": str(DEADLINE),
        "CUBE_PROXY_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "CUBE_PROXY_TRUSTED_FORWARDERS": f"{FORWARDER}/32",
        "CUBE_PROXY_PROXY_PROTOCOL_FROM": f"{BALANCER}/32",
        "CUBE_PROXY_SHUTDOWN_GRACE": "1",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "cube_stack.proxy"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def read() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            seen.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    port = 0
    try:
        while not port:
            line = lines.get(timeout=120)  # the SIMULATED chain is RSA-4096: a few seconds
            assert line is not None, f"the proxy exited ({child.wait()}):\n{''.join(seen)}"
            if match := LISTENING.search(line):
                port = int(match.group(1))
        yield StandaloneProxy(port, seen)
    finally:
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=30)
        reader.join(timeout=10)
        assert child.stderr is not None
        child.stderr.close()
        assert status == 0


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {
        reason: after[reason] - before.get(reason, 0)
        for reason in after
        if after[reason] != before.get(reason)
    }


async def test_300_half_sent_tls_handshakes_from_one_address(proxy: StandaloneProxy) -> None:
    before = await proxy.closed_counts()
    stop = asyncio.Event()
    normal = asyncio.create_task(keep_asking(lambda: proxy.get("/health"), stop))
    try:
        closes = await half_handshakes(ATTACKER, "127.0.0.1", proxy.port, 300, bound=20)
    finally:
        stop.set()
    latencies = await normal
    assert closes.never == 0  # every one closed: refused at once, or cut off at the handshake deadline
    changed = delta(await proxy.closed_counts(), before)
    assert set(changed) <= {"max_connections_per_address", "handshake_timeout"}, changed
    assert changed["max_connections_per_address"] >= 300 - PER_ADDRESS
    assert 0 < changed.get("handshake_timeout", 0) <= PER_ADDRESS
    assert sum(changed.values()) == 300
    assert latencies and max(latencies) < 5  # the normal client kept being answered, all 200


async def test_300_half_sent_headers_from_one_address(proxy: StandaloneProxy) -> None:
    before = await proxy.closed_counts()
    stop = asyncio.Event()
    normal = asyncio.create_task(keep_asking(lambda: proxy.get("/health"), stop))
    try:
        closes, answers = await half_headers(ATTACKER, "127.0.0.1", proxy.port, 300, bound=20, tls=True)
    finally:
        stop.set()
    latencies = await normal
    assert closes.never == 0  # uvicorn had no header deadline: a plain proxy keeps these for ever
    held = [answer for answer in answers if answer]
    assert held and all(answer.startswith(b"HTTP/1.1 408 ") for answer in held)
    changed = delta(await proxy.closed_counts(), before)
    assert changed["header_timeout"] == len(held) <= PER_ADDRESS
    assert changed["max_connections_per_address"] >= 300 - PER_ADDRESS
    assert latencies and max(latencies) < 5


async def test_x_forwarded_for_does_not_pick_the_attestation_limit_address(proxy: StandaloneProxy) -> None:
    # The finding's first attack: a random X-Forwarded-For per request passed 2,000 of 2,000.
    statuses = [
        await proxy.attest("127.0.0.1", headers={"X-Forwarded-For": f"198.18.{i}.{i}"})
        for i in range(BURST + 5)
    ]
    assert statuses == [200] * BURST + [429] * 5
    # The second: a spoofed X-Forwarded-For drained a real address's allowance and locked it out.
    assert {await proxy.attest("127.0.0.1", headers={"X-Forwarded-For": VICTIM}) for _ in range(BURST)} == {
        429
    }
    assert await proxy.attest(VICTIM) == 200


async def test_x_forwarded_for_counts_only_from_a_trusted_forwarder(proxy: StandaloneProxy) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    statuses = [await proxy.attest(FORWARDER, headers=forwarded) for _ in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]
    assert await proxy.attest(FORWARDER, headers={"X-Forwarded-For": "203.0.113.8"}) == 200  # another client
    assert await proxy.attest(FORWARDER) == 200  # the forwarder's own address was never charged


async def test_a_balancers_proxy_v2_header_names_the_client_the_limit_counts(proxy: StandaloneProxy) -> None:
    named = build_header(("198.51.100.9", 50000), ("10.0.0.1", 8900))
    statuses = [await proxy.attest(BALANCER, preamble=named) for _ in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]
    other = build_header(("198.51.100.10", 50000), ("10.0.0.1", 8900))
    assert await proxy.attest(BALANCER, preamble=other) == 200
    assert await proxy.attest(BALANCER, preamble=build_header(None)) == 200  # LOCAL: the balancer itself


@pytest.mark.parametrize(
    ("source", "preamble", "reason"),
    [
        pytest.param(
            NOT_A_BALANCER,
            build_header(("198.51.100.11", 1), ("10.0.0.1", 2)),
            "handshake_failed",
            id="spoofed",
        ),
        pytest.param(BALANCER, b"", "proxy_header", id="missing"),
        pytest.param(BALANCER, b"PROXY TCP4 198.51.100.12 10.0.0.1 1 2\r\n", "proxy_header", id="v1"),
        pytest.param(BALANCER, SIGNATURE + b"\x21\x11\x00\x04" + bytes(4), "proxy_header", id="short"),
    ],
)
async def test_a_proxy_header_is_refused_unless_a_balancer_sends_it_whole(
    proxy: StandaloneProxy, source: str, preamble: bytes, reason: str
) -> None:
    before = await proxy.closed_counts()
    with pytest.raises((ConnectionError, OSError, asyncio.IncompleteReadError)):
        await proxy.attest(source, preamble=preamble, bound=10)
    assert delta(await proxy.closed_counts(), before) == {reason: 1}
