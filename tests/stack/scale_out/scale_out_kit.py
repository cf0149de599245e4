"""The deployment of server-stack/deploy/ as real processes on loopback, for the scale-out tests.

One :class:`Topology` is PostgreSQL-backed ``cube-stack auth serve`` (a fresh database), two
``python -m cube_stack.proxy`` processes with TLS on (each makes its own key; SIMULATED agents sharing
one state directory, so the ``client-policy.json`` they write fits both), a ``redis-server`` of the
test's own that both share limits through, and HAProxy in ``mode tcp`` in front of them with
``send-proxy-v2``, its configuration made from the shipped ``deploy/haproxy/haproxy.cfg`` (addresses
and check timing substituted, nothing else). The built-in runtime is one more process
(:class:`RuntimeProcess`). Readiness is always a process's own log line; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from process_kit import HAPROXY, REDIS_SERVER, OutputReader, RedisServer, free_port
from standalone_kit import AuthProcess, Process, clean_environ, cube_stack, cube_stack_json, login

REPO = Path(__file__).resolve().parents[3]
SHIPPED_HAPROXY = REPO / "server-stack" / "deploy" / "haproxy" / "haproxy.cfg"
BALANCER = "127.0.0.6"  # HAProxy's source address towards the proxies: the only PROXY-protocol peer
RUNTIME_READY = re.compile(r"runtime ready: (http://\S+)")
PROXY_LISTENING = re.compile(
    r"proxy\.listening url=(https://127\.0\.0\.1:(\d+)) tls=\S+ spki_sha256=([0-9a-f]{64})"
)
EVERY_LINE = re.compile("")
DEMO_MODEL = "cube-demo:random"
EMBEDDER = "all-minilm:l6-v2"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
ADDRESS_KEY = secrets.token_hex(32)  # the HMAC key of client addresses in Redis, the same on both proxies
needs_balancer = pytest.mark.skipif(
    HAPROXY is None or REDIS_SERVER is None or sys.platform != "linux",
    reason="needs haproxy, redis-server and all of 127.0.0.0/8 on loopback",
)


# --------------------------------------------------------------------------------------------- processes


@dataclass
class RuntimeProcess(Process):
    """``python -m cube_stack.runtime --demo DIR --listen 127.0.0.1:0``."""

    url: str = ""

    @classmethod
    def serve(cls, demo_dir: Path) -> RuntimeProcess:
        argv = [
            sys.executable,
            "-m",
            "cube_stack.runtime",
            "--demo",
            str(demo_dir),
            "--listen",
            "127.0.0.1:0",
        ]
        process = cls(argv, clean_environ())
        process.start()
        process.url = process.wait_for(RUNTIME_READY).group(1)
        return process


@dataclass
class Proxy(Process):
    """``python -m cube_stack.proxy`` (TLS on); ``spki`` is the SHA-256 its ``proxy.listening`` line names."""

    name: str = ""
    url: str = ""
    port: int = 0
    spki: str = ""

    @classmethod
    def serve(cls, name: str, env: Mapping[str, str]) -> Proxy:
        process = cls([sys.executable, "-m", "cube_stack.proxy"], dict(env), name=name)
        process.start()
        match = process.wait_for(PROXY_LISTENING)
        process.url, process.port, process.spki = match.group(1), int(match.group(2)), match.group(3)
        return process

    def kill(self) -> int:
        """SIGKILL: a CVM that dies, not one that shuts down."""
        assert self.child is not None
        self.child.send_signal(signal.SIGKILL)
        return self.wait()

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Return once ``condition`` holds, checking it again after each line the proxy logs.

        The audit line of a request is written after its response went out, so a client can have its
        answer before the line is there: tests wait for it rather than read the log at once.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            self.wait_for(EVERY_LINE, timeout=max(0.0, deadline - time.monotonic()))

    def logged(self, pattern: re.Pattern[str], since: int = 0) -> bool:
        """Return whether a line from the ``since``-th on matches ``pattern``."""
        return any(pattern.search(line) for line in self.lines[since:])

    def audit(self) -> list[dict[str, Any]]:
        """Return the audit records (``proxy.request`` JSON lines) logged so far, in order."""
        records = []
        for line in self.lines:
            if line.startswith('{"event":"proxy.request"'):
                records.append(json.loads(line))
        return records

    def metric(self, name: str) -> float:
        """Return one unlabelled sample of its /metrics (asked directly, not through the balancer)."""
        text = httpx.get(f"{self.url}/metrics", verify=False, timeout=10).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        assert match is not None, f"{name} not in /metrics:\n{text}"
        return float(match.group(1))


class Balancer:
    """HAProxy run in the foreground; its log (stdout) read line by line."""

    def __init__(self, config: Path) -> None:
        assert HAPROXY is not None
        self._child = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log = OutputReader(self._child.stdout)

    def stop(self) -> None:
        self._child.terminate()
        self._child.wait(timeout=10)
        self.log.join()
        if self._child.stdout is not None:
            self._child.stdout.close()


def haproxy_config(port: int, servers: Mapping[str, int]) -> str:
    """Return the shipped haproxy.cfg with our listen port, our proxies and fast checks substituted.

    Substituted: the frontend's ``bind`` (a free loopback port), the example ``server`` lines (ours,
    each with ``source`` = :data:`BALANCER` so the proxies can tell the balancer apart), ``inter 5s``
    (1 s, so a dead proxy is marked down in about 3 s rather than 15 s), the global ``maxconn`` (1000:
    20000 needs more file descriptors than a test runner may have), and ``option
    log-health-checks`` added so the test waits on check results instead of guessing.
    """
    text = SHIPPED_HAPROXY.read_text()
    text, binds = re.subn(r"(?m)^(\s+)bind :8900$", rf"\g<1>bind 127.0.0.1:{port}", text)
    text, checks = re.subn(r"\binter 5s\b", "inter 1s", text)
    # 20000 connections need ~40000 descriptors; a test runner's hard limit may be lower (systemd gives
    # HAProxy plenty).
    text, maxconn = re.subn(r"(?m)^(\s+)maxconn 20000$", r"\g<1>maxconn 1000", text)
    text, options = re.subn(
        r"(?m)^(\s+)option httpchk$", r"\g<1>option httpchk\n\g<1>option log-health-checks", text
    )
    lines = [line for line in text.splitlines() if not re.match(r"\s+server cvm\d ", line)]
    ours = [f"    server {name} 127.0.0.1:{p} source {BALANCER}" for name, p in servers.items()]
    assert (binds, checks, maxconn, options) == (1, 1, 1, 1), (
        "the shipped haproxy.cfg changed shape: update the test"
    )
    return "\n".join(lines + ours) + "\n"


# --------------------------------------------------------------------------------------------- database


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(database="postgres", timeout=5, **PG)  # type: ignore[arg-type]
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database() -> str | None:
    """Create an empty, uniquely named PostgreSQL database; return its URL, or None without a server."""
    name = f"cube_scale_out_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    return f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------------------------- topology


@dataclass
class Member:
    """A user of the domain (in its admin role) with a JWT of their own: a rate-limit budget of their own."""

    user_id: str
    jwt: str


@dataclass
class Topology:
    """Everything of one deployment, started in dependency order and stopped in reverse."""

    workdir: Path
    runtime_url: str
    agent_state: Path
    proxy_settings: Mapping[str, str]
    database_url: str = ""
    key: Path | None = None
    auth: AuthProcess | None = None
    redis: RedisServer | None = None
    proxies: list[Proxy] = field(default_factory=list)
    balancer: Balancer | None = None
    port: int = 0
    domain: str = ""
    pat: str = ""
    admin_jwt: str = ""

    @property
    def endpoint(self) -> str:
        """Return the balancer's URL: what every client is given."""
        return f"https://127.0.0.1:{self.port}"

    @property
    def policy(self) -> Path:
        """Return the client policy the proxies wrote for their (shared) SIMULATED root."""
        return self.agent_state / "client-policy.json"

    @property
    def db(self) -> list[str]:
        return ["--database-url", self.database_url]

    def start(self, database_url: str) -> Topology:
        self.database_url = database_url
        self.key = self.workdir / "signing.pem"
        cube_stack("auth", "keygen", str(self.key))
        self.start_auth(["--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"])
        self.redis = RedisServer().start()
        for name in ("cvm1", "cvm2"):  # one after the other: the first makes the shared SIMULATED root
            self.proxies.append(Proxy.serve(name, self._proxy_env()))
        self.port = free_port()
        config = self.workdir / "haproxy.cfg"
        config.write_text(haproxy_config(self.port, {p.name: p.port for p in self.proxies}))
        self.balancer = Balancer(config)
        for proxy in self.proxies:
            self.balancer.log.wait_for(rf"Health check for server cube_proxies/{proxy.name} succeeded")
        self.domain = cube_stack_json("domain", "create", "Acme", "--route", "acme", *self.db)["id"]
        self.pat = cube_stack_json("token", "create", "--domain", self.domain, "--duration", "1h", *self.db)[
            "token"
        ]
        self.admin_jwt = login(self.auth_url)["access_token"]
        return self

    def start_auth(self, listen: list[str]) -> AuthProcess:
        assert self.key is not None
        self.auth = AuthProcess.serve([*self.db, "--signing-key", str(self.key), *listen])
        return self.auth

    @property
    def auth_url(self) -> str:
        assert self.auth is not None
        return self.auth.http_url

    def _proxy_env(self) -> dict[str, str]:
        assert self.auth is not None and self.redis is not None
        settings = {
            "HOST": "127.0.0.1",
            "PORT": "0",
            "TLS": "true",
            "AUTH_URL": self.auth.http_url,
            "AUTH_GRPC": self.auth.grpc_target,
            "OLLAMA_URL": self.runtime_url,
            "ATTESTATION": "simulated",
            "ATTESTATION_STATE_DIR": str(self.agent_state),
            "JWKS_MIN_REFRESH_INTERVAL": "0",
            "PROXY_PROTOCOL_FROM": f"{BALANCER}/32",
            "REDIS_URL": self.redis.url,
            "REDIS_ADDRESS_KEY": ADDRESS_KEY,
            "REDIS_LEASE": "1",
            "SHUTDOWN_GRACE": "1",
            # Every client here comes from 127.0.0.1: the attestation route's per-address limit is not
            # what these tests are about (test_proxy_protocol.py shows it through HAProxy).
            "ATTESTATION_BURST": "1000",
            "ATTESTATION_RATE_PER_MINUTE": "60000",
        } | dict(self.proxy_settings)
        return clean_environ() | {f"CUBE_PROXY_{k}": v for k, v in settings.items()}

    def add_member(self, name: str) -> Member:
        """Create a user, put them in the domain's admin role (the auth API's way), return their JWT."""
        password = f"{name}-password-1"
        cube_stack("user", "create", name, "--email", f"{name}@example.com", "--password", password, *self.db)
        jwt = login(self.auth_url, name, password)["access_token"]
        admin = {"Authorization": f"Bearer {self.admin_jwt}"}
        profile = httpx.get(f"{self.auth_url}/users/profile", headers={"Authorization": f"Bearer {jwt}"})
        user_id = str(profile.json()["id"])
        roles = httpx.get(f"{self.auth_url}/domains/{self.domain}/roles", headers=admin).json()["roles"]
        role = next(r["id"] for r in roles if r["name"] == "admin")
        added = httpx.post(
            f"{self.auth_url}/domains/{self.domain}/roles/{role}/members",
            json={"members": [user_id]},
            headers=admin,
        )
        assert added.status_code == 200, added.text
        return Member(user_id, jwt)

    def settings(self, token: str, **extra: Any) -> dict[str, Any]:
        """Return cube-lsp settings (the settings contract) for the balancer, attested SIMULATED."""
        return {
            "endpoint": self.endpoint,
            "domain": self.domain,
            "token": token,
            "api": "ollama",
            "models": {"completion": DEMO_MODEL, "chat": DEMO_MODEL, "embedding": EMBEDDER},
            "attestation": {"mode": "simulated", "policy": str(self.policy)},
        } | extra

    def stop(self) -> None:
        """Stop whatever still runs, the balancer first and the auth service last."""
        if self.balancer is not None:
            self.balancer.stop()
        for proxy in self.proxies:
            if proxy.child is not None and proxy.child.poll() is None:
                proxy.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.auth is not None and self.auth.child is not None and self.auth.child.poll() is None:
            self.auth.stop()


def through_balancer(topology: Topology, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
    """Send one request on a NEW connection through the balancer (so requests alternate between proxies).

    Plain ``verify=False`` TLS: this is the test looking at status codes, not a client handing over code;
    the clients under test (`cube complete`, cube-lsp, ollama, openai) attest.
    """
    with httpx.Client(verify=False, trust_env=False, timeout=30) as client:
        return client.request(
            method,
            f"{topology.endpoint}/{topology.domain}{path}",
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,
        )


@contextlib.contextmanager
def running_topology(
    runtime_url: str, agent_state: Path, workdir: Path, proxy_settings: Mapping[str, str]
) -> Iterator[Topology]:
    """Start a topology on a fresh PostgreSQL database; stop it and drop the database after."""
    database = create_database()
    if database is None:
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    running = Topology(workdir, runtime_url, agent_state, proxy_settings)
    try:
        yield running.start(database)
    finally:
        running.stop()
        drop_database(database)
