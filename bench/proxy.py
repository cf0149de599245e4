"""Benchmark: what our proxy adds to a model runtime, side by side with LiteLLM's proxy, in one run.

Four processes on 127.0.0.1, all in front of the same fake runtime:

* the upstream (``bench/_proxy_upstream.py``): a raw-asyncio server speaking OpenAI and Ollama, with
  small JSON answers and streams whose first chunk leaves at once (then 4 more, 5 ms apart);
* our proxy (``bench/_proxy_ours.py``), plain HTTP and, in a second process, TLS, asking the auth
  service as deployed: ``cube-stack auth serve`` in a process of its own (temporary SQLite) over
  ``auth.v1`` gRPC, a PAT made at start, allow decisions cached (warm after warm-up);
* LiteLLM's proxy (``litellm --config``) from its own venv, model ``openai/bench`` pointing at the
  upstream's ``/v1``, a master key, no database, nothing fetched from the network. Found through
  ``--litellm PATH``, else ``$CUBE_BENCH_LITELLM``, else ``litellm`` on ``PATH``; install it apart from
  ours: ``python3 -m venv ~/.cache/cube-bench-litellm && ~/.cache/cube-bench-litellm/bin/pip install
  'litellm[proxy]'``, then ``--litellm ~/.cache/cube-bench-litellm/bin/litellm``;
* with ``--redis URL``: two more rows of our proxy with its rate limits shared through that Redis
  (``ours+redis``: leases of 8 tokens, the steady state of a busy user; ``ours+redis/1``: a lease of 1,
  one Redis round trip on every request, the worst case). The bench's keys are ``cube:rl:u:<id>`` and
  expire on their own.

Baseline, measured in the same run: the upstream called directly. Figures:

* added latency: sequential keep-alive requests, one connection per target, the targets taken in
  turn (shuffled per round) so that every row sees the same machine state;
  added = percentile(proxied) - percentile(direct);
* throughput: requests/s at 1, 16 and 64 keep-alive connections, each cell run as short slices with the
  targets taken in turn, by ``wrk -t1`` (a Lua script sets the POST body and headers) or, without
  ``wrk``, by ``bench/_proxy_load.py`` (multi-process asyncio); each server's CPU time per request is
  read from /proc over those cells;
* streaming: time from sending the request to the first body chunk of an SSE answer.

The machine may be shared: the run reports how much CPU processes it did not start used meanwhile.
When our proxy misses a target (or with ``--profile always``) one more proxy process runs under cProfile
(CPU time) at c=16, and its CPU per request is printed by library and by function, with file:line.

Usage: .venv/bin/python bench/proxy.py [--quick] [--load {auto,wrk,python}] [--profile {auto,always,never}]
                                     [--litellm PATH | --no-litellm] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pstats
import random
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import psutil

HERE = Path(__file__).resolve().parent
TARGET_REDIS_CPU = 1.2  # CPU per request with shared limits: at most 20 % above the same run's without
TARGET_ADDED_P50_MS = 1.5
TARGET_RPS = 1500.0
CONCURRENCY = (1, 16, 64)
CHAT_BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8},
    separators=(",", ":"),
).encode()
CHAT_STREAM_BODY = json.dumps(
    {
        "model": "bench",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 8,
        "stream": True,
    },
    separators=(",", ":"),
).encode()
GENERATE_BODY = b'{"model":"bench","prompt":"def add(a, b):","stream":false}'


@dataclass(frozen=True)
class Plan:
    """How much to measure; ``--quick`` shrinks everything but the latency sample (>= 500)."""

    latency_warmup: int = 300
    latency_requests: int = 2000
    stream_warmup: int = 30
    stream_requests: int = 300
    load_warmup_s: int = 2
    load_slices: int = 5  # each throughput cell is this many slices, the targets taken in turn
    load_slice_s: int = 2
    profile_s: int = 10


QUICK = Plan(
    latency_warmup=100,
    latency_requests=500,
    stream_warmup=10,
    stream_requests=60,
    load_warmup_s=1,
    load_slices=3,
    load_slice_s=1,
    profile_s=4,
)


# --- processes ---------------------------------------------------------------------------------------


class Fleet:
    """The child processes of one run; :meth:`stop` ends each one's process group, by id."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own session (so Ctrl-C reaches only us), output to ``<name>.log``."""
        with open(self.workdir / f"{name}.log", "wb") as log:
            child = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        self.children[name] = child
        return child

    def log_tail(self, name: str, lines: int = 15) -> str:
        """Return the end of a child's log."""
        text = (self.workdir / f"{name}.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        """Signal one child's process group, wait ``grace`` seconds, then kill what is left."""
        child = self.children.pop(name, None)
        if child is None:
            return
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # stray grandchildren in the group

    def stop_all(self) -> None:
        """Stop every child, newest first."""
        for name in reversed(list(self.children)):
            self.stop(name)


def wait_ready(fleet: Fleet, name: str, probe: Iterator[bool], timeout: float) -> None:
    """Poll ``probe`` (readiness: a file or a health endpoint) until true, the child dies, or timeout."""
    child = fleet.children[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {child.returncode} while starting:\n{fleet.log_tail(name)}"
            )
        if next(probe):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} was not ready after {timeout:.0f} s:\n{fleet.log_tail(name)}")


def ready_file(path: Path) -> Iterator[bool]:
    while True:
        yield path.exists()


def healthy(url: str, path: str) -> Iterator[bool]:
    while True:
        try:
            with Connection(url) as conn:
                yield conn.request("GET", path, b"", {}).status == 200
        except OSError:
            yield False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_cpu(pid: int) -> float:
    """Return user+system CPU seconds of ``pid`` and its descendants."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


# --- a small blocking HTTP/1.1 client ----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    first_chunk_s: float  # request sent -> first body bytes (chunked: first whole non-empty chunk)
    total_s: float


class Connection:
    """One keep-alive connection; reconnects when the server closes it. TLS is not verified (a bench)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buffer.clear()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=self.host)
        return sock

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection mid-response")
        self.buffer += data

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        """Send one request and read the whole answer."""
        if self.sock is None:
            self.sock = self._connect()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        started = time.perf_counter()
        self.sock.sendall(raw)
        status_line = self._line()
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = -1, False, False
        while line := self._line():
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        first = 0.0
        if chunked:
            parts = []
            while size := int(self._line().split(b";", 1)[0], 16):
                parts.append(self._take(size))
                self._take(2)
                first = first or time.perf_counter()
            while self._line():  # trailers, then the empty line
                pass
            payload = b"".join(parts)
        else:
            payload = self._take(max(length, 0))
        ended = time.perf_counter()
        if close or (length < 0 and not chunked):
            self.close()
        return Reply(status, payload, (first or ended) - started, ended - started)


# --- what is measured --------------------------------------------------------------------------------


@dataclass
class Target:
    """One row of the table: where to send, with which credentials, and the server's pid."""

    name: str
    base: str
    pid: int
    prefix: str = ""  # our proxy: "/{domain_id}"
    token: str = "none"
    baseline: bool = False
    latency: list[float] = field(default_factory=list)
    ttfb: list[float] = field(default_factory=list)
    rps: dict[int, float | None] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    cpu_us: float | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}

    def url(self, path: str) -> str:
        return self.base + self.prefix + path


@dataclass(frozen=True)
class Probe:
    """One kind of request to one target, and where its timings go."""

    target: Target
    path: str
    body: bytes
    sink: list[float]
    first_chunk: bool = False  # record the time to the first body chunk, not to the end


def measure_latency(probes: list[Probe], warmup: int, count: int) -> None:
    """Send ``warmup`` + ``count`` rounds, one request per probe per round, sequentially.

    The order is shuffled each round (fixed seed), so work a server does after answering (LiteLLM's
    logging tasks) does not always land on the same next row.
    """
    conns = [Connection(probe.target.base) for probe in probes]
    order = list(range(len(probes)))
    shuffler = random.Random(7)
    try:
        for round_no in range(warmup + count):
            shuffler.shuffle(order)
            for conn, probe in ((conns[i], probes[i]) for i in order):
                target = probe.target
                reply = conn.request("POST", target.prefix + probe.path, probe.body, target.headers)
                if reply.status != 200:
                    raise RuntimeError(
                        f"{target.name} {probe.path}: HTTP {reply.status}: {reply.body[:300]!r}"
                    )
                if round_no >= warmup:
                    probe.sink.append(reply.first_chunk_s if probe.first_chunk else reply.total_s)
    finally:
        for conn in conns:
            conn.close()


WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass
class LoadResult:
    rps: float
    failures: int
    loadgen_cpu_s: float  # CPU the load generator used (all its processes)
    seconds: float


class LoadGenerator:
    """``wrk`` with a Lua script, or the multi-process asyncio fallback."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir

    def run(self, target: Target, path: str, body: bytes, concurrency: int, seconds: int) -> LoadResult:
        """Load ``target`` for ``seconds`` with ``concurrency`` keep-alive connections."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if self.kind == "wrk":
            script = self.workdir / "post.lua"
            script.write_text(WRK_SCRIPT.format(body=body.decode(), token=target.token), encoding="utf-8")
            argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script)]
            argv.append(target.url(path))
        else:
            body_file = self.workdir / "body.json"
            body_file.write_bytes(body)
            argv = [
                sys.executable, str(HERE / "_proxy_load.py"), "--url", target.url(path),
                "--body-file", str(body_file), "--concurrency", str(concurrency),
                "--duration", str(seconds), "--processes", "2",
                *[arg for k, v in target.headers.items() for arg in ("--header", f"{k}: {v}")],
            ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"{self.kind} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        if self.kind == "wrk":
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
            if line is None:
                raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")
            requests, duration_us, *errors = (int(x) for x in line.split()[1:])
            return LoadResult(requests / (duration_us / 1e6), sum(errors), cpu, duration_us / 1e6)
        result = json.loads(done.stdout)
        return LoadResult(result["requests"] / result["duration"], result["errors"], cpu, result["duration"])


# --- starting the servers ----------------------------------------------------------------------------


def start_upstream(fleet: Fleet) -> str:
    ready = fleet.workdir / "upstream.json"
    fleet.start("upstream", [sys.executable, str(HERE / "_proxy_upstream.py"), "--ready-file", str(ready)])
    wait_ready(fleet, "upstream", ready_file(ready), 30)
    url: str = json.loads(ready.read_text())["url"]
    wait_ready(fleet, "upstream", healthy(url, "/health"), 30)
    return url


def start_ours(
    fleet: Fleet,
    name: str,
    upstream: str,
    *,
    tls: bool,
    profile: Path | None = None,
    redis: str | None = None,
    lease: int = 8,
) -> Target:
    ready = fleet.workdir / f"{name}.json"
    argv = [sys.executable, str(HERE / "_proxy_ours.py"), "--upstream", upstream, "--ready-file", str(ready)]
    argv += ["--tls"] if tls else []
    argv += ["--profile", str(profile)] if profile else []
    argv += ["--redis", redis, "--redis-lease", str(lease)] if redis else []
    child = fleet.start(name, argv)
    wait_ready(fleet, name, ready_file(ready), 60)
    info = json.loads(ready.read_text())
    wait_ready(fleet, name, healthy(info["url"], "/health"), 60)
    label = "ours, TLS" if tls else "ours"
    if redis:
        label = "ours+redis" if lease > 1 else f"ours+redis/{lease}"
    return Target(label, info["url"], child.pid, prefix=f"/{info['domain']}", token=info["token"])


LITELLM_CONFIG = """\
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {upstream}/v1
      api_key: sk-upstream
litellm_settings:
  telemetry: false
  drop_params: true
  turn_off_message_logging: true
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: {master_key}
  disable_spend_logs: true
  disable_error_logs: true
  background_health_checks: false
  store_model_in_db: false
"""

# Same policy as our proxy under `cube-stack up`: no line per request (uvicorn's access log off).
LITELLM_LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
DEAD = "http://127.0.0.1:9"  # discard port: nothing listens, so a stray fetch fails on loopback


def litellm_env() -> dict[str, str]:
    """Environment for LiteLLM: no telemetry, local copies of every remote JSON, no database."""
    dropped = {"DATABASE_URL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}  # its own venv, no database
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k not in dropped}
    env.update(
        LITELLM_TELEMETRY="False",
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOCAL_BLOG_POSTS="True",
        LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True",
        LITELLM_LOCAL_POLICY_TEMPLATES="True",
        LITELLM_LOCAL_AUTOROUTER_PRESETS="True",
        LITELLM_MODEL_COST_MAP_URL=f"{DEAD}/model_prices.json",
        LITELLM_BLOG_POSTS_URL=f"{DEAD}/rss.xml",
        LITELLM_ANTHROPIC_BETA_HEADERS_URL=f"{DEAD}/beta.json",
        LITELLM_AUTOROUTER_PRESETS_URL=f"{DEAD}/presets.json",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        # Anything that still reaches for a remote host goes to a dead loopback proxy instead.
        HTTP_PROXY=DEAD,
        HTTPS_PROXY=DEAD,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def find_litellm(option: str | None) -> Path | None:
    """Return LiteLLM's executable: ``--litellm``, else ``$CUBE_BENCH_LITELLM``, else ``litellm`` on PATH."""
    named = option or os.environ.get("CUBE_BENCH_LITELLM") or shutil.which("litellm")
    return Path(named) if named and Path(named).exists() else None


def start_litellm(fleet: Fleet, upstream: str, litellm: Path) -> Target:
    master_key = "sk-bench-master"
    config = fleet.workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream, master_key=master_key), encoding="utf-8")
    log_config = fleet.workdir / "litellm-logging.json"
    log_config.write_text(json.dumps(LITELLM_LOG_CONFIG), encoding="utf-8")
    port = free_port()
    argv = [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--log_config", str(log_config)]
    child = fleet.start("litellm", argv, env=litellm_env())
    url = f"http://127.0.0.1:{port}"
    wait_ready(fleet, "litellm", healthy(url, "/health/liveliness"), 180)
    return Target("litellm", url, child.pid, token=master_key)


# --- the run -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def run_throughput(load: LoadGenerator, targets: list[Target], plan: Plan) -> float:
    """Fill each target's ``rps`` per concurrency; return the load generator's highest CPU share.

    A cell is ``plan.load_slices`` runs of ``plan.load_slice_s`` seconds, the targets taken in turn, so a
    burst of unrelated work on a shared machine lands on every row alike.
    """
    busiest = 0.0
    cpu = dict.fromkeys((t.name for t in targets), 0.0)
    served = dict.fromkeys((t.name for t in targets), 0.0)
    path = "/v1/chat/completions"
    for concurrency in CONCURRENCY:
        for target in targets:
            load.run(target, path, CHAT_BODY, concurrency, plan.load_warmup_s)
        done = dict.fromkeys((t.name for t in targets), 0.0)
        seconds = dict.fromkeys((t.name for t in targets), 0.0)
        for _ in range(plan.load_slices):
            for target in targets:
                cpu_before = process_cpu(target.pid)
                result = load.run(target, path, CHAT_BODY, concurrency, plan.load_slice_s)
                cpu[target.name] += process_cpu(target.pid) - cpu_before
                done[target.name] += result.rps * result.seconds
                seconds[target.name] += result.seconds
                target.failures[concurrency] = target.failures.get(concurrency, 0) + result.failures
                busiest = max(busiest, result.loadgen_cpu_s / result.seconds)
        for target in targets:
            target.rps[concurrency] = done[target.name] / seconds[target.name]
            served[target.name] += done[target.name]
    for target in targets:
        target.cpu_us = cpu[target.name] / served[target.name] * 1e6 if served[target.name] else None
    return busiest


class MachineLoad:
    """How much CPU other processes took while we measured (this machine may be shared)."""

    def __init__(self) -> None:
        self.cpus = psutil.cpu_count() or 1
        self.before = psutil.cpu_times()
        self.started = time.monotonic()

    @staticmethod
    def busy(times: Any) -> float:
        """Return the non-idle seconds of a ``psutil.cpu_times()`` tuple."""
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    def others(self, ours_cpu: float) -> float:
        """Return the share of all CPUs used by processes not ours since construction."""
        wall = time.monotonic() - self.started
        used = self.busy(psutil.cpu_times()) - self.busy(self.before) - ours_cpu
        return max(0.0, used / (wall * self.cpus))


def our_cpu(fleet: Fleet) -> float:
    """Return the CPU seconds of this process, its reaped children (load runs) and its live servers."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(process_cpu(child.pid) for child in fleet.children.values())
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime + live


def print_table(targets: list[Target], generate: tuple[list[float], list[float]], load_kind: str) -> None:
    base = next(t for t in targets if t.baseline)
    b50, b99 = percentile(base.latency, 0.5), percentile(base.latency, 0.99)
    t50 = percentile(base.ttfb, 0.5)
    header = (
        f"{'target':<20}{'p50 ms':>8}{'p99 ms':>8}{'+p50 ms':>9}{'+p99 ms':>9}{'p50 x':>7}"
        + "".join(f"{f'c={c} req/s':>13}{'x':>6}" for c in CONCURRENCY)
        + f"{'cpu us/req':>11}{'ttfb ms':>9}{'+ttfb ms':>9}{'ttfb x':>8}"
    )
    print(header)
    print("-" * len(header))
    for t in targets:
        p50, p99, f50 = percentile(t.latency, 0.5), percentile(t.latency, 0.99), percentile(t.ttfb, 0.5)
        added = ("-", "-") if t.baseline else (ms(p50 - b50), ms(p99 - b99))
        cells = ""
        for c in CONCURRENCY:
            rps, base_rps = t.rps.get(c), base.rps.get(c)
            mark = "!" if t.failures.get(c) else ""
            cells += f"{f'{rps:,.0f}{mark}':>13}{f'{rps / base_rps:.2f}' if rps and base_rps else '-':>6}"
        cpu = f"{t.cpu_us:,.0f}" if t.cpu_us is not None else "-"
        name = f"{t.name} (baseline)" if t.baseline else t.name
        print(
            f"{name:<20}{ms(p50):>8}{ms(p99):>8}{added[0]:>9}{added[1]:>9}{p50 / b50:>7.1f}{cells}{cpu:>11}"
            f"{ms(f50):>9}{'-' if t.baseline else ms(f50 - t50):>9}{f50 / t50:>8.2f}"
        )
    direct_gen, ours_gen = generate
    g50, o50 = percentile(direct_gen, 0.5), percentile(ours_gen, 0.5)
    print(
        f"Ollama /api/generate (no stream): direct p50 {ms(g50)} ms, ours p50 {ms(o50)} ms "
        f"(+{ms(o50 - g50)} ms, p99 +{ms(percentile(ours_gen, 0.99) - percentile(direct_gen, 0.99))} ms)"
    )
    if any(t.failures.get(c) for t in targets for c in CONCURRENCY):
        print("! some answers in this cell were not 2xx/3xx or hit socket errors; the figure counts them")
    print(f"load generator: {load_kind}")


def verdicts(ours: Target, base: Target) -> list[tuple[str, bool]]:
    added = percentile(ours.latency, 0.5) - percentile(base.latency, 0.5)
    best = max((ours.rps.get(c) or 0.0) for c in CONCURRENCY)
    best_c = max(CONCURRENCY, key=lambda c: ours.rps.get(c) or 0.0)
    cores = psutil.cpu_count(logical=True)
    return [
        (
            f"p50 added <= {TARGET_ADDED_P50_MS} ms (warm auth cache): {added * 1000:.2f} ms",
            added * 1000 <= TARGET_ADDED_P50_MS,
        ),
        (
            f">= {TARGET_RPS:,.0f} small requests/s on 2 cores: best {best:,.0f}/s at c={best_c} "
            f"({cores} logical CPUs here, shared by load generator, proxy and upstream)",
            best >= TARGET_RPS,
        ),
    ]


def redis_verdicts(row: Target, ours: Target, base: Target) -> list[tuple[str, bool]]:
    added = percentile(row.latency, 0.5) - percentile(base.latency, 0.5)
    cpu, cpu_ours = row.cpu_us or 0.0, ours.cpu_us or 0.0
    return [
        (
            f"{row.name}: p50 added <= {TARGET_ADDED_P50_MS} ms: {added * 1000:.2f} ms",
            added * 1000 <= TARGET_ADDED_P50_MS,
        ),
        (
            f"{row.name}: CPU per request within 20 % of ours without Redis: {cpu:,.0f} vs {cpu_ours:,.0f} us"
            f" ({cpu / cpu_ours - 1:+.0%})"
            if cpu_ours
            else f"{row.name}: CPU per request not measured",
            bool(cpu_ours) and cpu <= cpu_ours * TARGET_REDIS_CPU,
        ),
    ]


AREAS = (  # (label, substrings of a profiled file name); the first match wins
    ("our proxy (cube_stack/proxy, auth client)", ("cube_stack/",)),
    ("httpx + httpcore + anyio (upstream client)", ("/httpx/", "/httpcore/", "/anyio/")),
    ("failed imports (importlib, per call)", ("<frozen importlib", "_distutils_hack", "__editable__")),
    ("h11 (both HTTP/1.1 parsers)", ("/h11/",)),
    ("uvicorn (server protocol)", ("/uvicorn/",)),
    ("starlette (router, middleware, requests)", ("/starlette/",)),
    ("asyncio event loop, sockets", ("/asyncio/", "select.epoll", "_socket.socket", "selectors.py")),
    ("json, dataclasses, logging (audit record)", ("/json/", "dataclasses.py", "/logging/", "json.")),
)


def area(file: str, func: str) -> str:
    text = f"{file} {func}"
    return next(
        (label for label, keys in AREAS if any(key in text for key in keys)), "other (stdlib, builtins)"
    )


def short(file: str) -> str:
    for prefix in (
        str(HERE.parent) + "/",
        sys.prefix + "/lib/python3.11/",
        sys.base_prefix + "/lib/python3.11/",
    ):
        file = file.replace(prefix, "")
    return file


def profile_ours(fleet: Fleet, load: LoadGenerator, upstream: str, plan: Plan) -> None:
    """Run one more proxy under cProfile (CPU time) at c=16 and print where its CPU goes per request."""
    stats_path = fleet.workdir / "ours.prof"
    target = start_ours(fleet, "ours-profiled", upstream, tls=False, profile=stats_path)
    measure_latency([Probe(target, "/v1/chat/completions", CHAT_BODY, [])], 200, 0)
    load.run(target, "/v1/chat/completions", CHAT_BODY, 16, plan.load_warmup_s)
    os.kill(target.pid, signal.SIGUSR1)
    result = load.run(target, "/v1/chat/completions", CHAT_BODY, 16, plan.profile_s)
    fleet.stop("ours-profiled")
    requests = result.rps * result.seconds
    entries = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    per_request = 1e6 / requests
    total = sum(row[2] for row in entries.values()) * per_request
    print(
        f"\nProfile of our proxy: cProfile on CPU time, c=16, {requests:,.0f} requests "
        f"({result.rps:,.0f}/s under the profiler, which slows small calls): {total:,.0f} us CPU per request"
    )
    by_area: dict[str, float] = {}
    for (file, _line, func), row in entries.items():
        key = area(file, func)
        by_area[key] = by_area.get(key, 0.0) + row[2] * per_request
    print(f"{'self us/req':>12}  share  area")
    for key, cost in sorted(by_area.items(), key=lambda kv: kv[1], reverse=True):
        print(f"{cost:>12.0f}  {cost / total:>5.0%}  {key}")
    print(f"\n{'self us/req':>12}{'cum us/req':>12}  function (top 25 by own time)")
    for (file, line, func), row in sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:25]:
        print(f"{row[2] * per_request:>12.1f}{row[3] * per_request:>12.1f}  {short(file)}:{line} {func}")
    print(f"\n{'cum us/req':>12}  function (top 25 by cumulative time, proxy and its libraries)")
    cumulative = sorted(entries.items(), key=lambda kv: kv[1][3], reverse=True)
    shown = [kv for kv in cumulative if area(kv[0][0], kv[0][2]) in {label for label, _ in AREAS[:6]}][:25]
    for (file, line, func), row in shown:
        print(f"{row[3] * per_request:>12.1f}  {short(file)}:{line} {func}")


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else Plan()
    load_kind = args.load if args.load != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if load_kind == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk), use --load python")
    with tempfile.TemporaryDirectory(prefix="cube-bench-proxy-") as tmp:
        fleet = Fleet(Path(tmp))
        try:
            return measure(args, plan, fleet, LoadGenerator(load_kind, Path(tmp)))
        finally:
            fleet.stop_all()


def measure(args: argparse.Namespace, plan: Plan, fleet: Fleet, load: LoadGenerator) -> int:
    idle_before = 100 - psutil.cpu_percent(interval=1.0)
    started = time.monotonic()
    upstream = start_upstream(fleet)
    direct = Target("direct", upstream, fleet.children["upstream"].pid, baseline=True)
    ours = start_ours(fleet, "ours", upstream, tls=False)
    ours_tls = start_ours(fleet, "ours-tls", upstream, tls=True)
    targets = [direct, ours, ours_tls]
    shared = []
    if args.redis:
        shared = [
            start_ours(fleet, f"ours-redis-{n}", upstream, tls=False, redis=args.redis, lease=n)
            for n in (8, 1)
        ]
        targets += shared
    litellm = find_litellm(args.litellm)
    if litellm is not None and not args.no_litellm:
        targets.append(start_litellm(fleet, upstream, litellm))
    else:
        print(
            "LiteLLM not run ("
            + (
                "--no-litellm"
                if args.no_litellm
                else "not found: --litellm PATH, $CUBE_BENCH_LITELLM or PATH"
            )
            + "); install it in its own venv: python3 -m venv ~/.cache/cube-bench-litellm && "
            "~/.cache/cube-bench-litellm/bin/pip install 'litellm[proxy]'"
        )
    print(f"servers up in {time.monotonic() - started:.1f} s; measuring (quick={args.quick})", flush=True)
    machine = MachineLoad()
    ours_before = our_cpu(fleet)

    generate: tuple[list[float], list[float]] = ([], [])
    probes = [Probe(t, "/v1/chat/completions", CHAT_BODY, t.latency) for t in targets]
    probes += [
        Probe(direct, "/api/generate", GENERATE_BODY, generate[0]),
        Probe(ours, "/api/generate", GENERATE_BODY, generate[1]),
    ]
    measure_latency(probes, plan.latency_warmup, plan.latency_requests)
    streams = [Probe(t, "/v1/chat/completions", CHAT_STREAM_BODY, t.ttfb, first_chunk=True) for t in targets]
    measure_latency(streams, plan.stream_warmup, plan.stream_requests)
    busiest = run_throughput(load, targets, plan)
    others = machine.others(our_cpu(fleet) - ours_before)

    print(
        f"\ncube proxy benchmark: {plan.latency_requests} sequential requests per row after "
        f"{plan.latency_warmup} warm-up (targets in turn), {plan.load_slices} x {plan.load_slice_s} s per "
        f"throughput cell (targets in turn), "
        f"{plan.stream_requests} streams per row; POST /v1/chat/completions, ~{len(CHAT_BODY)} B in, "
        f"~230 B out; {psutil.cpu_count()} CPUs"
    )
    print_table(targets, generate, load.kind)
    print(
        f"load generator's busiest cell used {busiest * 100:.0f}% of one CPU"
        + (
            " (wrk -t1: one thread, so it is not the bottleneck below ~90%)"
            if load.kind == "wrk"
            else " (python: includes starting its worker processes; compare against the servers' CPU)"
        )
    )
    print(
        "cpu us/req: the server process's CPU time per request over the three throughput cells (direct: "
        "the upstream's own; proxied: the proxy's alone). ttfb: request sent -> first SSE chunk (the "
        "upstream sends it at once)."
    )
    print(
        f"machine: {machine.cpus} CPUs, {idle_before:.0f}% idle just before the run; processes not started "
        f"by this run used {others * 100:.0f}% of all CPUs while it measured (the higher, the noisier)"
    )
    results = verdicts(ours, direct)
    for row in shared:
        results += redis_verdicts(row, ours, direct)
    for text, ok in results:
        print(f"target  {'PASS' if ok else 'MISS'}  {text}")
    if args.profile == "always" or (args.profile == "auto" and not all(ok for _, ok in results)):
        profile_ours(fleet, load, direct.base, plan)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: smaller samples, 3 s cells")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto", help="load generator")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                        help="profile our proxy (auto: when it misses a target)")  # fmt: skip
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM row")
    parser.add_argument("--litellm", help="LiteLLM's executable (default: $CUBE_BENCH_LITELLM, else PATH)")
    parser.add_argument("--redis", help="also run our proxy with rate limits shared through this Redis URL")
    args = parser.parse_args()

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # unwinds through run(), which stops every child

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    try:
        sys.exit(run(args))
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
