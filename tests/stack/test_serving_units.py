"""The serving layer's pure parts: limits, the PROXY v2 wire format, counting, bounded logs, back-off."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys

import pytest

import cube_stack.serving as serving
from cube_stack.proxy import ProxySettings, ProxySettingsError
from cube_stack.proxy.metrics import ProxyMetrics
from cube_stack.serving import (
    ConnectionLimits,
    ConnectionLimitsError,
    ProxyHeader,
    ProxyHeaderError,
    ServingStats,
    address_key,
    build_header,
    guarded_config,
    parse_header,
    parse_prefix,
    return_free_memory,
)
from cube_stack.serving.guard import TRIM_AFTER_ADMITTED, BoundedLog, ConnectionGuard, ConnectionSlot
from cube_stack.serving.listener import BACKOFF_MAX, Listener, read_proxy_header
from cube_stack.serving.proxy_protocol import SIGNATURE


def test_public_surface() -> None:
    assert serving.__all__ == [
        "CLOSE_REASONS",
        "ConnectionLimits",
        "ConnectionLimitsError",
        "GuardedServer",
        "ProxyHeader",
        "ProxyHeaderError",
        "ServingError",
        "ServingStats",
        "address_key",
        "build_header",
        "guarded_config",
        "parse_header",
        "parse_prefix",
        "return_free_memory",
    ]


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"handshake_timeout": 0}, "handshake_timeout"),
        ({"header_timeout": float("inf")}, "header_timeout"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections_per_address": 0}, "max_connections_per_address"),
        ({"max_connections": 10, "max_connections_per_address": 11}, "max_connections_per_address"),
        ({"trusted_forwarders": ("*",)}, "trusted_forwarders"),
        ({"trusted_forwarders": ("10.0.0.0/33",)}, "trusted_forwarders"),
        ({"trusted_forwarders": "10.0.0.1"}, "trusted_forwarders"),
        ({"proxy_protocol_from": ("balancer.example",)}, "proxy_protocol_from"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(values: dict[str, object], field: str) -> None:
    with pytest.raises(ConnectionLimitsError) as caught:
        ConnectionLimits(**values)  # type: ignore[arg-type]
    assert caught.value.code == "serving.limits_invalid" and caught.value.field == field
    with pytest.raises(ProxySettingsError) as through_settings:
        ProxySettings(**values)  # type: ignore[arg-type]
    assert through_settings.value.field == field


def test_proxy_settings_default_to_the_serving_defaults_and_read_cidr_lists() -> None:
    assert ProxySettings().connection_limits() == ConnectionLimits()
    assert ConnectionLimits().trusted_forwarders == () and ConnectionLimits().proxy_protocol_from == ()
    settings = ProxySettings.from_env(
        {
            "CUBE_PROXY_TRUSTED_FORWARDERS": "10.0.0.0/8, fd00::/8",
            "CUBE_PROXY_PROXY_PROTOCOL_FROM": "192.0.2.10",
            "CUBE_PROXY_MAX_CONNECTIONS_PER_ADDRESS": "16",
        }
    )
    limits = settings.connection_limits()
    assert limits.trusted_forwarders == ("10.0.0.0/8", "fd00::/8")
    assert limits.max_connections_per_address == 16
    assert limits.is_balancer("192.0.2.10") and not limits.is_balancer("192.0.2.11")
    assert limits.is_balancer("::ffff:192.0.2.10")  # an IPv4 peer on a dual-stack socket


def test_address_keys_count_ipv6_by_its_64() -> None:
    assert address_key("198.51.100.9") == "198.51.100.9"
    assert address_key("::ffff:198.51.100.9") == "198.51.100.9"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")


def test_forwarded_headers_are_trusted_only_when_forwarders_are_named() -> None:
    plain = guarded_config(object(), ConnectionLimits())
    assert plain.proxy_headers is False
    trusting = guarded_config(object(), ConnectionLimits(trusted_forwarders=("10.0.0.0/8",)))
    assert trusting.proxy_headers is True and trusting.forwarded_allow_ips == ["10.0.0.0/8"]
    for name in ("http", "ws", "proxy_headers", "forwarded_allow_ips"):
        with pytest.raises(TypeError):
            guarded_config(object(), ConnectionLimits(), **{name: None})


# --------------------------------------------------------------------------------- PROXY protocol

# haproxy proxy-protocol.txt, 2.2: PROXY, TCP over IPv4, 192.0.2.1:56324 -> 192.0.2.2:443, no TLVs.
V4_VECTOR = bytes.fromhex("0d0a0d0a000d0a515549540a2111000cc0000201c0000202dc0401bb")
V6_VECTOR = bytes.fromhex(
    "0d0a0d0a000d0a515549540a" "21" "21" "0024"
    "20010db8000000000000000000000001" "20010db8000000000000000000000002" "dc04" "01bb"
)  # fmt: skip


def test_the_v2_wire_format_both_ways() -> None:
    assert parse_header(V4_VECTOR[:16], V4_VECTOR[16:]) == ProxyHeader(
        ("192.0.2.1", 56324), ("192.0.2.2", 443)
    )
    assert parse_header(V6_VECTOR[:16], V6_VECTOR[16:]) == ProxyHeader(
        ("2001:db8::1", 56324), ("2001:db8::2", 443)
    )
    assert build_header(("192.0.2.1", 56324), ("192.0.2.2", 443)) == V4_VECTOR
    assert build_header(("2001:db8::1", 56324), ("2001:db8::2", 443)) == V6_VECTOR
    local = build_header(None)
    assert local == SIGNATURE + b"\x20\x00\x00\x00" and parse_header(local[:16], b"") == ProxyHeader(
        None, None
    )
    with_tlvs = V4_VECTOR[:14] + b"\x00\x13" + V4_VECTOR[16:] + b"\x04\x00\x04abcd"  # a NOOP TLV, ignored
    assert parse_header(with_tlvs[:16], with_tlvs[16:]).source == ("192.0.2.1", 56324)
    unspec = SIGNATURE + b"\x21\x00\x00\x00"  # PROXY with family UNSPEC: keep the real peer
    assert parse_header(unspec, b"") == ProxyHeader(None, None)


@pytest.mark.parametrize(
    ("prefix", "code"),
    [
        (b"PROXY TCP4 192.0.2.1 1", "serving.proxy_header_signature"),
        (b"\x16\x03\x01\x02\x00" + bytes(11), "serving.proxy_header_signature"),
        (SIGNATURE + b"\x11\x11\x00\x0c", "serving.proxy_header_version"),
        (SIGNATURE + b"\x22\x11\x00\x0c", "serving.proxy_header_command"),
        (SIGNATURE + b"\x21\x11\x00\x0b", "serving.proxy_header_length"),
        (SIGNATURE + b"\x21\x21\x00\x0c", "serving.proxy_header_length"),
        (SIGNATURE + b"\x21\x11\x08\x01", "serving.proxy_header_length"),
        (SIGNATURE + b"\x21\x11", "serving.proxy_header_truncated"),
    ],
)
def test_bad_prefixes_are_refused_with_a_code(prefix: bytes, code: str) -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        parse_prefix(prefix[:16] if len(prefix) >= 16 else prefix)
    assert caught.value.code == code


@pytest.mark.parametrize("family", [0x12, 0x22, 0x31, 0x32])  # UDP over IPv4/IPv6, Unix stream/datagram
def test_families_a_tcp_balancer_never_sends_are_refused(family: int) -> None:
    prefix = SIGNATURE + bytes([0x21, family]) + b"\x00\x0c"
    with pytest.raises(ProxyHeaderError) as caught:
        parse_header(prefix, bytes(12))
    assert caught.value.code == "serving.proxy_header_family"


def test_a_body_shorter_than_announced_is_refused() -> None:
    with pytest.raises(ProxyHeaderError) as caught:
        parse_header(V4_VECTOR[:16], V4_VECTOR[16:-1])
    assert caught.value.code == "serving.proxy_header_truncated"


async def test_reading_a_header_never_takes_a_byte_past_it() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        theirs.sendall(V4_VECTOR + b"\x16\x03\x01 the ClientHello")
        header = await read_proxy_header(asyncio.get_running_loop(), ours)
        assert header.source == ("192.0.2.1", 56324)
        assert ours.recv(100) == b"\x16\x03\x01 the ClientHello"


async def test_a_wrong_first_byte_is_refused_without_waiting_for_sixteen() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        theirs.sendall(b"\x16")  # a TLS record: a client that skipped the balancer
        with pytest.raises(ProxyHeaderError) as caught:
            await asyncio.wait_for(read_proxy_header(asyncio.get_running_loop(), ours), 5)
    assert caught.value.code == "serving.proxy_header_signature"


# ------------------------------------------------------------------------------- counting and logs


def test_a_bounded_log_writes_one_line_per_interval_with_the_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    bounded = BoundedLog(logging.getLogger("test.bounded"), interval=5.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.bounded"):
        for _ in range(10_000):
            bounded.note("serving.closed reason=x", "last_peer=127.0.0.2")
        bounded.flush()  # not due yet
        assert len(caplog.records) == 1 and "count=1 " in caplog.records[0].getMessage()
        clock.now += 5.0
        bounded.flush()
        assert len(caplog.records) == 2 and "count=9999 " in caplog.records[1].getMessage()
        bounded.note("serving.closed reason=x")
        bounded.note("serving.accept_error errno=EMFILE")  # another kind has its own interval
        bounded.flush(force=True)
    counts = [record.getMessage().split("count=")[1].split()[0] for record in caplog.records]
    assert counts == ["1", "9999", "1", "1"]


def test_slots_count_per_address_and_release_once() -> None:
    stats = ServingStats()
    guard = ConnectionGuard(
        ConnectionLimits(max_connections=3, max_connections_per_address=2),
        stats,
        log=BoundedLog(logging.getLogger("test.guard")),
        trim=lambda: True,
    )
    first, second, third = (guard.reserve("127.0.0.2") for _ in range(3))
    assert first and second and third and stats.open == 3
    assert guard.reserve("127.0.0.3") is None and stats.closed["max_connections"] == 1
    assert guard.claim_address(first, "127.0.0.2") and guard.claim_address(second, "127.0.0.2")
    assert not guard.claim_address(third, "127.0.0.2") and stats.closed["max_connections_per_address"] == 1
    third.release()
    first.release()
    first.release()  # the listener and the protocol may both see the end
    assert stats.open == 1 and guard.held_by("127.0.0.2") == 1
    second.release()
    assert stats.open == 0 and guard.held_by("127.0.0.2") == 0


def test_memory_is_trimmed_when_many_admitted_connections_have_drained() -> None:
    trims: list[int] = []
    stats = ServingStats()
    limits = ConnectionLimits(max_connections=10_000, max_connections_per_address=10_000)
    guard = ConnectionGuard(
        limits, stats, log=BoundedLog(logging.getLogger("t")), trim=lambda: not trims.append(1)
    )

    def admit(count: int) -> list[ConnectionSlot]:
        slots = [guard.reserve("127.0.0.2") for _ in range(count)]
        assert all(slot is not None and guard.claim_address(slot, "127.0.0.2") for slot in slots)
        return slots  # type: ignore[return-value]

    for _ in range(TRIM_AFTER_ADMITTED - 1):
        admit(1)[0].release()
    assert trims == []  # too few to be worth it
    held = admit(64)  # an attack holds its per-address cap while others come and go
    for _ in range(10):
        for slot in admit(32):
            slot.release()
    assert trims == []  # the open count never fell to a quarter of its peak
    peak = 64 + 32
    for slot in held[: 64 - peak // 4 - 1]:
        slot.release()
    assert trims == [] and stats.open == peak // 4 + 1
    held[64 - peak // 4 - 1].release()  # the attack ends: down to a quarter of the peak
    assert trims == [1] and stats.memory_trims == 1
    for slot in held[64 - peak // 4 :]:
        slot.release()
    assert trims == [1]  # nothing admitted since


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_free_memory_goes_back_through_glibc() -> None:
    assert return_free_memory() is True


def test_metrics_show_what_the_server_refused() -> None:
    metrics = ProxyMetrics()
    assert "cube_proxy_connections" not in metrics.render()
    stats = ServingStats(open=3, accept_errors=2)
    stats.closed["header_timeout"] = 7
    metrics.connections = stats
    text = metrics.render()
    assert "cube_proxy_connections_open 3" in text
    assert 'cube_proxy_connections_closed_total{reason="header_timeout"} 7' in text
    assert 'cube_proxy_connections_closed_total{reason="max_connections_per_address"} 0' in text
    assert "cube_proxy_accept_errors_total 2" in text


# ------------------------------------------------------------------------------------------ back-off


class FailingSocket:
    """A listening socket whose accept() fails with ``errors`` in turn, then has nothing to accept."""

    def __init__(self, errors: list[int]) -> None:
        self.errors = errors

    def fileno(self) -> int:
        return 99

    def setblocking(self, _flag: bool) -> None:
        pass

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, errno.errorcode[code])
        raise BlockingIOError


class RecordingLoop:
    """Just the loop calls the listener makes, recorded; timers run when the test says."""

    def __init__(self) -> None:
        self.reading = False
        self.delays: list[float] = []
        self.timers: list[object] = []

    def add_reader(self, _fd: int, callback: object) -> None:
        self.reading = True
        self.on_readable = callback

    def remove_reader(self, _fd: int) -> bool:
        self.reading = False
        return True

    def call_later(self, delay: float, callback: object) -> Cancellable:
        self.delays.append(delay)
        self.timers.append(callback)
        return Cancellable()


class Cancellable:
    def cancel(self) -> None:
        pass


def test_accept_errors_back_off_doubling_to_a_second_and_stop_reading_meanwhile() -> None:
    stats = ServingStats()
    guard = ConnectionGuard(ConnectionLimits(), stats, log=BoundedLog(logging.getLogger("test.backoff")))
    loop = RecordingLoop()
    listener = Listener(
        FailingSocket([errno.EMFILE] * 9 + [errno.ENFILE]),  # type: ignore[arg-type]
        guard=guard,
        limits=ConnectionLimits(),
        protocol_factory=lambda slot: asyncio.Protocol(),
        ssl_context=None,
        loop=loop,  # type: ignore[arg-type]
    )
    listener.start()
    for _ in range(10):
        assert loop.reading
        loop.on_readable()  # type: ignore[operator]
        assert not loop.reading  # no spinning on EMFILE
        loop.timers.pop()()  # type: ignore[operator]
    assert loop.delays == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, BACKOFF_MAX, BACKOFF_MAX, BACKOFF_MAX]
    assert stats.accept_errors == 10
    listener.close()
    assert not loop.reading
