"""Issue 8, finding 2, against the auth API as `cube-stack up` serves it (a real `cube-stack up` process).

The auth service listens with the default :class:`~cube_stack.serving.ConnectionLimits`: 15 s for a
request's headers, 64 connections per address. 300 connections from 127.0.0.2 that never finish their
headers: 236 are reset at accept, the 64 it holds get 408 and are closed at the deadline, and a client on
127.0.0.1 is answered all along. Before the fix the auth API kept all 300 for as long as they stayed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cube_stack.serving import ConnectionLimits
from tests.support.slow_clients import half_headers, keep_asking, request
from tests.support.stack_process import cube_stack_up

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="needs all of 127.0.0.0/8 on loopback"),
]

DEFAULTS = ConnectionLimits()
@pytest.fixture
def auth_port(tmp_path: Path) -> Iterator[int]:
    """Run `cube-stack up` (ports 0, no Ollama); yield the port of its auth API."""
    with cube_stack_up(tmp_path / "data") as running:
        yield running.auth_port


async def test_300_half_sent_headers_against_the_auth_api(auth_port: int) -> None:
    stop = asyncio.Event()
    normal = asyncio.create_task(keep_asking(lambda: request("127.0.0.1", auth_port, "/health"), stop))
    try:
        closes, answers = await half_headers(
            "127.0.0.2", "127.0.0.1", auth_port, 300, bound=DEFAULTS.header_timeout + 20, tls=False
        )
    finally:
        stop.set()
    latencies = await normal
    assert closes.never == 0  # all closed: reset at accept, or 408 at the header deadline
    refused = 300 - DEFAULTS.max_connections_per_address
    assert closes.within(DEFAULTS.header_timeout / 2) >= refused
    held = [answer for answer in answers if answer]
    assert 0 < len(held) <= DEFAULTS.max_connections_per_address
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in held)
    assert latencies and max(latencies) < 5
