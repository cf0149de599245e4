"""Benchmark: the proxy under slowloris -- 5,000 slow connections from one address (issue 8, finding 2).

Three processes on loopback:

* the proxy: ``python -m cube_stack.proxy`` over TLS with the SIMULATED agent and the default connection
  limits (10 s handshake, 15 s headers, 2,000 connections, 64 per address), its log (INFO, as a service
  runs it) written to a file;
* the attacker (this file, ``--role attacker``), bound to 127.0.0.2: it keeps ``--slow`` connection slots
  busy -- half of them send half a TLS ClientHello, the other half finish TLS and send headers that never
  end, both trickling a byte every few seconds -- and reopens each slot about ``--reconnect`` seconds
  after the proxy closed it, as a real attacker would;
* the normal client (this process), on 127.0.0.1: ``GET /health`` on a fresh TLS connection each time
  (TCP connect, handshake, request, answer), ``--rate`` times a second.

Baseline, measured in the same run: the normal client's latency with no attack. Reported: latency p50 and
p99 without and with the attack (failures counted: a timeout of 10 s is a failure), the proxy's RSS
before, during (peak) and after the attack (once the proxy has closed the attacker's connections), the
bytes the proxy logged meanwhile, and what ``/metrics`` says it refused. Targets (issue 8): p99 under
200 ms, log under 1 MB, RSS back within 50 MB of where it started.

The run is bounded: every phase has a fixed length or a deadline, and the whole run is killed after
``--deadline`` seconds (default 300) with its children.

Usage: .venv/bin/python bench/slowloris.py [--slow 5000] [--attack-seconds 30] [--baseline-seconds 10]
       [--rate 20] [--reconnect 1.0] [--deadline 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil

HERE = Path(__file__).resolve().parent
ATTACKER = "127.0.0.2"
CLIENT = "127.0.0.1"
TARGET_P99_MS = 200.0
TARGET_LOG_BYTES = 1_000_000
TARGET_RSS_MB = 50.0
LISTENING = re.compile(r"proxy\.listening url=https://127\.0\.0\.1:(\d+)")
HALF_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"  # a TLS record header announcing 512 bytes that never come
HALF_HEADERS = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+
REQUEST = b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def client_context() -> ssl.SSLContext:
    """Return a TLS client context that accepts the proxy's self-signed certificate (no trust needed here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


# ------------------------------------------------------------------------------------------ attacker


@dataclass
class AttackCounts:
    attempts: int = 0  # connections opened (or tried)
    reset_at_once: int = 0  # closed by the proxy before the attacker could send, or within 0.5 s
    closed_later: int = 0  # closed by the proxy after a while (a deadline)
    held_now: int = 0
    held_peak: int = 0


async def attack_slot(
    port: int, kind: str, stop: asyncio.Event, counts: AttackCounts, reconnect: float, context: ssl.SSLContext
) -> None:
    """Keep one slow connection going: open, stall, trickle; when the proxy closes it, open another."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        counts.attempts += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        writer: asyncio.StreamWriter | None = None
        opened = time.monotonic()
        try:
            # Choose the source port at connect time, by the whole 4-tuple: a bind() to port 0 searches the
            # ephemeral range under a lock and stalls the attacker's loop once tens of thousands are used.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((ATTACKER, 0))
            await loop.sock_connect(sock, ("127.0.0.1", port))
            if kind == "tls":
                await loop.sock_sendall(sock, HALF_CLIENT_HELLO)
                reader = None
            else:
                reader, writer = await asyncio.open_connection(
                    sock=sock, ssl=context, server_hostname="localhost"
                )
                writer.write(HALF_HEADERS)
            counts.held_now += 1
            counts.held_peak = max(counts.held_peak, counts.held_now)
            try:
                while not stop.is_set():  # trickle a byte every ~3 s until the proxy closes us
                    try:
                        async with asyncio.timeout(random.uniform(2.0, 4.0)):
                            data = await (reader.read(4096) if reader else loop.sock_recv(sock, 4096))
                        if not data:
                            break
                    except TimeoutError:
                        if writer is not None:
                            writer.write(b"x")
                        else:
                            await loop.sock_sendall(sock, b"\x00")
            finally:
                counts.held_now -= 1
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.transport.abort()
            sock.close()
        if stop.is_set():
            return
        if time.monotonic() - opened < 0.5:
            counts.reset_at_once += 1
        else:
            counts.closed_later += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(reconnect * random.uniform(0.5, 1.5)):
                await stop.wait()


async def attack(port: int, slots: int, reconnect: float) -> None:
    """Run ``slots`` attack slots until stdin closes or says stop; print counts as JSON lines."""
    raise_open_files(slots + 256)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    counts = AttackCounts()
    tasks = []
    context = client_context()  # one for all: loading the CA store takes ~20 ms
    for i in range(slots):  # ramp up in batches, so the attacker's own connects do not time out
        kind = "tls" if i % 2 else "headers"
        tasks.append(asyncio.create_task(attack_slot(port, kind, stop, counts, reconnect, context)))
        if i % 250 == 249:
            await asyncio.sleep(0.05)
    print(json.dumps({"ready": True, **counts.__dict__}), flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop" or EOF
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(counts.__dict__), flush=True)


# -------------------------------------------------------------------------------------- normal client


async def one_request(port: int, context: ssl.SSLContext) -> float:
    """Return the seconds of one GET /health on a fresh TLS connection from 127.0.0.1."""
    start = time.perf_counter()
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost", local_addr=(CLIENT, 0)
        )
        try:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(f"unexpected answer {head[:40]!r}")
            await reader.read()
        finally:
            writer.transport.abort()
    return time.perf_counter() - start


@dataclass
class Samples:
    ms: list[float] = field(default_factory=list)
    failed: int = 0

    def percentile(self, q: float) -> float:
        if not self.ms:
            return float("nan")
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(port: int, seconds: float, rate: float, rss: RssWatch | None = None) -> Samples:
    """Make requests at ``rate`` per second for ``seconds``; sample the proxy's RSS meanwhile."""
    context = client_context()
    samples = Samples()
    end = time.monotonic() + seconds
    interval = 1.0 / rate
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            samples.ms.append(await one_request(port, context) * 1000)
        except (OSError, ssl.SSLError, TimeoutError, RuntimeError, asyncio.IncompleteReadError):
            samples.failed += 1
        if rss is not None:
            rss.sample()
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
    return samples


async def metric(port: int, name: str) -> dict[str, float]:
    """Return the samples of one /metrics family, by label text ("" for none)."""
    context = client_context()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="localhost", local_addr=(CLIENT, 0)
    )
    try:
        writer.write(REQUEST.replace(b"/health", b"/metrics"))
        text = (await reader.read()).decode()
    finally:
        writer.transport.abort()
    out = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M):
        out[match[1] or ""] = float(match[2])
    return out


# ----------------------------------------------------------------------------------------- the run


class RssWatch:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0

    def now_mb(self) -> float:
        return self.process.memory_info().rss / 2**20

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)


@dataclass
class Proxy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def log_bytes(self) -> int:
        return self.log.stat().st_size


def start_proxy(directory: Path) -> Proxy:
    log = directory / "proxy.log"
    env = os.environ | {
        "CUBE_PROXY_PORT": "0",
        "CUBE_PROXY_AUTH_URL": "http://127.0.0.1:9",  # /health needs no auth
        "CUBE_PROXY_OLLAMA_URL": "http://127.0.0.1:9",
        "CUBE_PROXY_ATTESTATION": "simulated",
        "CUBE_PROXY_ATTESTATION_STATE_DIR": str(directory / "agent"),
        "CUBE_PROXY_SHUTDOWN_GRACE": "2",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "cube_stack.proxy"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if match := LISTENING.search(log.read_text(errors="replace")):
            return Proxy(process, int(match.group(1)), log)
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the proxy did not listen within 120 s")


def start_attacker(port: int, slots: int, reconnect: float) -> subprocess.Popen[str]:
    command = [sys.executable, __file__, "--role", "attacker", "--port", str(port)]
    command += ["--slow", str(slots), "--reconnect", str(reconnect)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


async def wait_drained(port: int, bound: float) -> float:
    """Wait until the proxy holds no client connection but ours (at most ``bound`` s); return the count."""
    end = time.monotonic() + bound
    while True:
        open_now = (await metric(port, "cube_proxy_connections_open")).get("", 0.0)
        if open_now <= 1 or time.monotonic() > end:  # 1: this very /metrics request
            return open_now
        await asyncio.sleep(0.5)


class Progress:
    """Say on stderr what the run is doing, with the seconds since it started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, what: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f} s] {what}", file=sys.stderr, flush=True)


def row(label: str, samples: Samples) -> str:
    return (
        f"{label:<44}{len(samples.ms):>9}{samples.failed:>8}"
        f"{samples.percentile(0.5):>9.1f}{samples.percentile(0.99):>9.1f}"
        f"{max(samples.ms, default=float('nan')):>9.1f}"
    )


async def run(args: argparse.Namespace) -> int:
    progress = Progress()
    with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp:
        progress("starting the proxy")
        proxy = start_proxy(Path(tmp))
        attacker: subprocess.Popen[str] | None = None
        try:
            rss = RssWatch(proxy.process.pid)
            await measure(proxy.port, 2, args.rate)  # warm-up: imports, TLS session state, allocator
            rss_before = rss.now_mb()
            progress(f"baseline: {args.baseline_seconds:g} s without attack")
            baseline = await measure(proxy.port, args.baseline_seconds, args.rate)
            log_before = proxy.log_bytes()
            closed_before = await metric(proxy.port, "cube_proxy_connections_closed_total")

            progress(f"starting the attacker: {args.slow:,} slots from {ATTACKER}")
            attacker = start_attacker(proxy.port, args.slow, args.reconnect)
            assert attacker.stdout is not None and attacker.stdin is not None
            ready = json.loads(await asyncio.to_thread(attacker.stdout.readline))
            rss.peak = 0
            progress(f"attack: {args.attack_seconds:g} s")
            attacked = await measure(proxy.port, args.attack_seconds, args.rate, rss)
            open_during = (await metric(proxy.port, "cube_proxy_connections_open")).get("", 0.0)
            progress("stopping the attacker")
            attacker.stdin.write("stop\n")
            attacker.stdin.flush()
            final = json.loads(await asyncio.to_thread(attacker.stdout.readline))
            attacker.wait(30)
            progress("waiting for the proxy to close what is left")
            left = await wait_drained(proxy.port, 30)
            await asyncio.sleep(1)  # let the last closes run their course before reading RSS
            rss_after = rss.now_mb()
            log_bytes = proxy.log_bytes() - log_before
            closed = await metric(proxy.port, "cube_proxy_connections_closed_total")
            accept_errors = (await metric(proxy.port, "cube_proxy_accept_errors_total")).get("", 0.0)
            log_lines = proxy.log.read_bytes()[log_before : log_before + log_bytes].count(b"\n")
        finally:
            progress("stopping")
            if attacker is not None and attacker.poll() is None:
                attacker.kill()
            proxy.process.send_signal(signal.SIGTERM)
            try:
                proxy.process.wait(30)
            except subprocess.TimeoutExpired:
                proxy.process.kill()

    print(
        f"\nThe proxy over TLS on 127.0.0.1 (python -m cube_stack.proxy, default limits); normal client on "
        f"{CLIENT}, {args.rate:g} fresh-connection GET /health a second"
    )
    print(f"{'phase':<44}{'requests':>9}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(row("no attack [baseline]", baseline))
    print(row(f"{args.slow:,} slow connections from {ATTACKER}", attacked))
    print(
        f"\nattacker: {final['attempts']:,} connections opened in {args.attack_seconds:g} s "
        f"({ready['attempts']:,} in the first ramp); reset at once {final['reset_at_once']:,}, closed later "
        f"(deadlines) {final['closed_later']:,}; at most {final['held_peak']:,} open on its side at once"
    )
    changes = {
        label.split('"')[1]: value - closed_before.get(label, 0.0)
        for label, value in closed.items()
        if value - closed_before.get(label, 0.0)
    }
    print(
        f"proxy /metrics: connections open during the attack {open_during:.0f}, after {left:.0f}; "
        f"closed before serving {json.dumps({k: int(v) for k, v in changes.items()})}; "
        f"accept errors {accept_errors:.0f}"
    )
    peak_mb = rss.peak / 2**20
    print(
        f"proxy RSS: before {rss_before:.1f} MB, during (peak) {peak_mb:.1f} MB, after {rss_after:.1f} MB "
        f"({rss_after - rss_before:+.1f} MB)"
    )
    print(f"proxy log during the attack and drain: {log_bytes:,} bytes, {log_lines} lines")
    checks = [
        (f"p99 with the attack < {TARGET_P99_MS:.0f} ms", attacked.percentile(0.99) < TARGET_P99_MS),
        ("no failed request", attacked.failed == 0),
        (f"log < {TARGET_LOG_BYTES:,} bytes", log_bytes < TARGET_LOG_BYTES),
        (f"RSS after within {TARGET_RSS_MB:.0f} MB of before", rss_after - rss_before < TARGET_RSS_MB),
    ]
    for label, ok in checks:
        print(f"target: {label} -> {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=5000, help="slow connection slots held by the attacker")
    parser.add_argument("--attack-seconds", type=float, default=30.0, help="how long the attack lasts")
    parser.add_argument("--baseline-seconds", type=float, default=10.0, help="the no-attack phase")
    parser.add_argument("--rate", type=float, default=20.0, help="normal requests per second")
    parser.add_argument(
        "--reconnect", type=float, default=1.0, help="attacker's pause before reopening a slot"
    )
    parser.add_argument(
        "--deadline", type=float, default=300.0, help="kill everything after this many seconds"
    )
    parser.add_argument("--role", choices=("bench", "attacker"), default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "attacker":
        asyncio.run(attack(args.port, args.slow, args.reconnect))
        return

    def give_up(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(f"bench/slowloris.py: stopped by signal {signum} (deadline {args.deadline:g} s)")

    signal.signal(signal.SIGALRM, give_up)
    signal.signal(signal.SIGTERM, give_up)
    signal.setitimer(signal.ITIMER_REAL, args.deadline)
    try:
        sys.exit(asyncio.run(run(args)))
    except KeyboardInterrupt:
        print("\ninterrupted; proxy and attacker stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
