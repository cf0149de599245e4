"""The PROXY protocol: raw bytes through the parsers and the reader, then a real HAProxy in front.

The unit tests feed hostile input (short reads, bad lengths, UNKNOWN and LOCAL, garbage) to
:mod:`cube_stack.serving.proxy_protocol` and to the listener's reader over a socket pair, and check the
reader never takes a byte past the header (those belong to TLS). The end-to-end test starts
``python -m cube_stack.proxy`` (TLS, SIMULATED agent) behind ``haproxy`` in ``mode tcp`` with
``send-proxy-v2`` and ``send-proxy`` (v1), connecting to it from 127.0.0.6 only, and shows that the
attestation route's per-address limit sees the clients HAProxy names, not HAProxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from process_kit import HAPROXY, OutputReader, ProxyProcess, free_port, proxy_env

from cube_stack.serving import ProxyHeaderError, build_header
from cube_stack.serving.listener import read_proxy_header
from cube_stack.serving.proxy_protocol import (
    V1_MAX_BYTES,
    ProxyHeader,
    build_v1,
    parse_v1,
    v1_bytes_still_due,
)

# --- v1 lines, parsed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8900\r\n", (("203.0.113.7", 51234), ("10.0.0.1", 8900))),
        (b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n", (("2001:db8::7", 1), ("2001:db8::1", 65535))),
        (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", (("0.0.0.0", 0), ("0.0.0.0", 0))),
        (b"PROXY UNKNOWN\r\n", (None, None)),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", (None, None)),  # the rest is ignored, as specified
    ],
)
def test_v1_lines_name_the_client(line: bytes, expected: tuple[object, object]) -> None:
    assert parse_v1(line) == ProxyHeader(*expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8900\n", id="no-cr"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n", id="missing-port"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8900 9\r\n", id="extra-field"),
        pytest.param(b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", id="family-mismatch"),
        pytest.param(b"PROXY TCP6 203.0.113.7 10.0.0.1 1 2\r\n", id="v4-as-tcp6"),
        pytest.param(b"PROXY TCP4 203.0.113.999 10.0.0.1 1 2\r\n", id="bad-address"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n", id="port-too-big"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 -1 2\r\n", id="negative-port"),
        pytest.param(b"PROXY TCP4 203.0.113.7 10.0.0.1 \xd9\xa1 2\r\n", id="non-ascii-digit"),
        pytest.param(b"PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n", id="protocol"),
        pytest.param(b"PROXY  TCP4 203.0.113.7 10.0.0.1 1 2\r\n", id="double-space"),
        pytest.param(b"PROXY TCP4 " + b"1" * 100 + b"\r\n", id="too-long"),
        pytest.param(b"proxy TCP4 203.0.113.7 10.0.0.1 1 2\r\n", id="lower-case"),
    ],
)
def test_malformed_v1_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        parse_v1(line)
    assert caught.value.code == "serving.proxy_header_v1"


def _random_line(rng: random.Random) -> bytes:
    if rng.random() < 0.1:
        return build_v1(None)
    if rng.random() < 0.5:
        src = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        dst = str(ipaddress.IPv4Address(rng.getrandbits(32)))
    else:
        src = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice((0, 64, 120))))
        dst = str(ipaddress.IPv6Address(rng.getrandbits(128) >> rng.choice((0, 64, 120))))
    return build_v1((src, rng.randrange(65536)), (dst, rng.randrange(65536)))


def test_the_v1_reader_never_asks_for_a_byte_past_the_line() -> None:
    rng = random.Random(7)
    lines = [b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", b"PROXY TCP6 :: :: 0 0\r\n", b"PROXY UNKNOWN\r\n"]
    lines += [_random_line(rng) for _ in range(2000)]
    for line in lines:
        assert len(line) <= V1_MAX_BYTES
        have, reads = line[:12], 1
        while due := v1_bytes_still_due(have):
            assert len(have) + due <= len(line), (line, have, due)  # never a byte of TLS
            have, reads = line[: len(have) + due], reads + 1
        assert have == line and parse_v1(have) == parse_v1(line)
        assert reads <= 45  # about one read per two bytes of the addresses; the rest in larger pieces


# --- the reader, over a socket pair -------------------------------------------------------------------


async def _read_fed(chunks: list[bytes], *, v1: bool) -> tuple[ProxyHeader, bytes]:
    """Feed ``chunks`` into one end of a socket pair; return the header read at the other and the rest."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    loop = asyncio.get_running_loop()
    try:

        async def feed() -> None:
            for chunk in chunks:
                await loop.sock_sendall(theirs, chunk)
                await asyncio.sleep(0)  # one chunk per turn of the loop: the reader sees short reads
            theirs.shutdown(socket.SHUT_WR)  # then the peer is done: a cut header is truncated

        theirs.setblocking(False)
        feeder = asyncio.create_task(feed())
        async with asyncio.timeout(5):
            header = await read_proxy_header(loop, ours, v1=v1)
            await feeder
        rest = b""
        async with asyncio.timeout(5):
            while chunk := await loop.sock_recv(ours, 4096):
                rest += chunk
        return header, rest
    finally:
        if "feeder" in locals():
            feeder.cancel()
        ours.close()
        theirs.close()


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize("split", ["whole", "bytewise"])
async def test_the_reader_stops_exactly_at_the_header_end(split: str) -> None:
    tls = b"\x16\x03\x01\x02\x00TLS-CLIENT-HELLO"
    for header_bytes, v1 in (
        (build_header(("198.51.100.9", 40000), ("10.0.0.1", 443)), False),
        (build_header(("2001:db8::9", 40000), ("2001:db8::1", 443)), False),
        (build_header(None), False),
        (build_v1(("198.51.100.9", 40000), ("10.0.0.1", 443)), True),
        (build_v1(("2001:db8::9", 40000), ("2001:db8::1", 443)), True),
        (build_v1(None), True),
    ):
        data = header_bytes + tls
        chunks = [data] if split == "whole" else _bytewise(data)
        header, rest = await _read_fed(chunks, v1=v1)
        assert rest == tls
        assert header.source in (None, ("198.51.100.9", 40000), ("2001:db8::9", 40000))


@pytest.mark.parametrize(
    ("data", "v1", "code"),
    [
        pytest.param(
            b"\x16\x03\x01\x02\x00" + b"\x00" * 20, True, "serving.proxy_header_signature", id="tls"
        ),
        pytest.param(b"GET / HTTP/1.1\r\n\r\n", True, "serving.proxy_header_signature", id="http"),
        pytest.param(build_v1(("198.51.100.9", 1)), False, "serving.proxy_header_signature", id="v1-off"),
        pytest.param(
            build_header(("198.51.100.9", 1))[:20], True, "serving.proxy_header_truncated", id="v2-cut"
        ),
        pytest.param(b"PROXY TCP4 1.2.3.4", True, "serving.proxy_header_truncated", id="v1-cut"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n\r\n", True, "serving.proxy_header_v1", id="v1-lf"),
    ],
)
async def test_garbage_and_cut_headers_are_refused(data: bytes, v1: bool, code: str) -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        await _read_fed(_bytewise(data), v1=v1)
    assert caught.value.code == code


async def test_a_v1_line_without_an_end_is_refused_at_its_longest() -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        await _read_fed([b"PROXY TCP6 " + b"f" * 200], v1=True)
    assert caught.value.code == "serving.proxy_header_v1"


# --- a real HAProxy in front of a real proxy ---------------------------------------------------------

BALANCER = "127.0.0.6"
BURST = 2
HAPROXY_CONFIG = """\
global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option log-health-checks
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe_v2
    bind 127.0.0.1:{v2_port}
    default_backend be_v2
frontend fe_v1
    bind 127.0.0.1:{v1_port}
    default_backend be_v1
backend be_v2
    default-server check check-ssl check-send-proxy verify none inter 1s
    server proxy 127.0.0.1:{proxy_port} source {balancer} send-proxy-v2
backend be_v1
    default-server check check-ssl check-send-proxy verify none inter 1s
    server proxy 127.0.0.1:{proxy_port} source {balancer} send-proxy
"""

needs_haproxy = pytest.mark.skipif(
    HAPROXY is None or sys.platform != "linux", reason="needs haproxy and all of 127.0.0.0/8 on loopback"
)


@contextlib.contextmanager
def haproxy(config: Path) -> Iterator[OutputReader]:
    assert HAPROXY is not None
    child = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = OutputReader(child.stdout)
    try:
        yield output
    finally:
        child.terminate()
        child.wait(timeout=10)
        output.join()
        if child.stdout is not None:
            child.stdout.close()


async def _attest(port: int, source: str) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=False)
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=10) as client:
        body = {"nonce": secrets.token_hex(32)}
        response = await client.post(f"https://127.0.0.1:{port}/acme/attestation", json=body)
        return response.status_code


@pytest.mark.slow
@needs_haproxy
async def test_through_haproxy_the_limits_see_the_clients_it_names(tmp_path: Path) -> None:
    proxy = ProxyProcess(
        proxy_env(
            tmp_path / "agent",
            auth_url="http://127.0.0.1:9",
            ollama_url="http://127.0.0.1:9",
            proxy_protocol_from=f"{BALANCER}/32",
            proxy_protocol_v1="true",
            attestation_rate_per_minute="0.001",
            attestation_burst=str(BURST),
            handshake_timeout="1",
        )
    )
    try:
        proxy.wait_listening()
        v2_port, v1_port = free_port(), free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            HAPROXY_CONFIG.format(v2_port=v2_port, v1_port=v1_port, proxy_port=proxy.port, balancer=BALANCER)
        )
        with haproxy(config) as log:
            for backend in ("be_v2", "be_v1"):  # TLS checks with a PROXY header pass: both paths are up
                log.wait_for(re.compile(rf"Health check for server {backend}/proxy succeeded"), timeout=30)

            assert [await _attest(v2_port, "127.0.0.2") for _ in range(BURST + 1)] == [200] * BURST + [429]
            assert await _attest(v1_port, "127.0.0.3") == 200  # another client: a bucket of its own
            assert await _attest(v2_port, "127.0.0.3") == 200  # the same client by v2: the same bucket
            assert await _attest(v1_port, "127.0.0.3") == 429
            assert await _attest(v2_port, "127.0.0.4") == 200  # HAProxy's own address counts for nothing

        with pytest.raises(httpx.TransportError):  # the balancer's address without a header: reset
            await _health_from(proxy.port, BALANCER)
        async with httpx.AsyncClient(verify=False, trust_env=False, timeout=5) as client:
            metrics = (await client.get(f"https://127.0.0.1:{proxy.port}/metrics")).text
        closed = re.search(r'cube_proxy_connections_closed_total\{reason="proxy_header"\} (\d+)', metrics)
        assert closed is not None and int(closed.group(1)) >= 1
    finally:
        assert proxy.stop() == 0
    assert "198.51" not in proxy.log.text  # nothing invented: only loopback clients took part


async def _health_from(port: int, source: str) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=False, retries=0)
    async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=5) as client:
        response = await client.get(f"https://127.0.0.1:{port}/health")
        return response.status_code


def test_the_config_template_is_valid_for_haproxy(tmp_path: Path) -> None:
    if HAPROXY is None:
        pytest.skip("haproxy is not installed")
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(v2_port=1, v1_port=2, proxy_port=3, balancer=BALANCER))
    done = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
