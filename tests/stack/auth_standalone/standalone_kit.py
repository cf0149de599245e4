"""Real processes for the standalone tests: `cube-stack auth serve`, `python -m cube_stack.proxy`, the CLI.

Each process's stderr is read by a thread into a list and a queue; readiness is the process's own
``auth.listening`` / ``proxy.listening`` log line, so nothing sleeps. Stopping sends SIGTERM and returns
the exit status. :func:`poll` retries a request until an answer matches, for the two waits that are
about time by nature (a cached decision or a token expiring), and fails with the last answer.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

AUTH_LISTENING = re.compile(r"auth\.listening http=(http://\S+) grpc=(\S+) grpc_tls=(\w+)")
PROXY_LISTENING = re.compile(r"proxy\.listening url=(https?://\S+)")
ADMIN = {"username": "admin", "email": "admin@example.com", "password": "admin-password-1"}
CHEAP = {  # cheap argon2id and no fsync: tests only
    "CUBE_AUTH_ARGON2_TIME_COST": "1",
    "CUBE_AUTH_ARGON2_MEMORY_KIB": "8",
    "CUBE_AUTH_SQLITE_SYNCHRONOUS": "off",
}
START_TIMEOUT = 120.0  # the SIMULATED agent's first start makes an RSA-4096 chain


def clean_environ() -> dict[str, str]:
    """The test process's environment without any CUBE_AUTH_/CUBE_PROXY_ setting of the developer's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("CUBE_AUTH_", "CUBE_PROXY_"))}


@dataclass
class Process:
    """A child process whose stderr lines are collected as they come."""

    argv: Sequence[str]
    env: Mapping[str, str]
    lines: list[str] = field(default_factory=list)
    child: subprocess.Popen[str] | None = None
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    def start(self) -> Process:
        self.child = subprocess.Popen(
            list(self.argv),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.child is not None and self.child.stderr is not None
        for line in self.child.stderr:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Return the first new line matching ``pattern``; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"{self.argv[2:4]} exited ({self.wait()}):\n{self.output}"
            if match := pattern.search(line):
                return match

    def stop(self) -> int:
        """Send SIGTERM and return the exit status."""
        assert self.child is not None
        if self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        assert self.child is not None
        status = self.child.wait(timeout=30)
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self.child.stderr is not None and not self.child.stderr.closed:
            self.child.stderr.close()
        return status

    @property
    def output(self) -> str:
        return "".join(self.lines)


@dataclass
class AuthProcess(Process):
    """`cube-stack auth serve`; :meth:`serve` waits for its listening line."""

    http_url: str = ""
    grpc_target: str = ""

    @classmethod
    def serve(cls, args: Sequence[str], env: Mapping[str, str] | None = None) -> AuthProcess:
        environ = (
            clean_environ()
            | CHEAP
            | {
                "CUBE_AUTH_ADMIN_USERNAME": ADMIN["username"],
                "CUBE_AUTH_ADMIN_EMAIL": ADMIN["email"],
                "CUBE_AUTH_ADMIN_PASSWORD": ADMIN["password"],
            }
        )
        argv = [sys.executable, "-m", "cube_stack.cli", "auth", "serve", *args]
        process = cls(argv, environ | dict(env or {}))
        process.start()
        match = process.wait_for(AUTH_LISTENING)
        process.http_url, process.grpc_target = match.group(1), match.group(2)
        return process

    @property
    def listen_args(self) -> list[str]:
        """The flags that bring a restart back on the same addresses."""
        return ["--http-listen", self.http_url.removeprefix("http://"), "--grpc-listen", self.grpc_target]


@dataclass
class ProxyProcess(Process):
    """`python -m cube_stack.proxy` with the SIMULATED agent and plain HTTP towards the test."""

    url: str = ""

    @classmethod
    def serve(
        cls, auth: AuthProcess, runtime_url: str, runtime_token: str, state: Path, **env: str
    ) -> ProxyProcess:
        environ = clean_environ() | {
            "CUBE_PROXY_PORT": "0",
            "CUBE_PROXY_TLS": "false",  # the attested TLS path has its own tests; here it is auth
            "CUBE_PROXY_AUTH_URL": auth.http_url,
            "CUBE_PROXY_AUTH_GRPC": auth.grpc_target,
            "CUBE_PROXY_OLLAMA_URL": runtime_url,
            "CUBE_PROXY_RUNTIME_API_KEY": runtime_token,
            "CUBE_PROXY_ATTESTATION": "simulated",
            "CUBE_PROXY_ATTESTATION_STATE_DIR": str(state),
            "CUBE_PROXY_JWKS_MIN_REFRESH_INTERVAL": "0",
            **{f"CUBE_PROXY_{k.upper()}": v for k, v in env.items()},
        }
        process = cls([sys.executable, "-m", "cube_stack.proxy"], environ)
        process.start()
        process.url = process.wait_for(PROXY_LISTENING).group(1)
        return process


def cube_stack(*args: str, env: Mapping[str, str] | None = None) -> str:
    """Run `cube-stack ARGS` (the real CLI) and return its stdout; fail with its stderr."""
    environ = clean_environ() | CHEAP | dict(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "cube_stack.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"cube-stack {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done.stdout


def cube_stack_json(*args: str, env: Mapping[str, str] | None = None) -> Any:
    return json.loads(cube_stack(*args, env=env))


def login(
    auth_url: str, username: str = ADMIN["username"], password: str = ADMIN["password"]
) -> dict[str, str]:
    """Issue a token pair (the admin's by default) through ``POST /users/tokens/issue``."""
    body = {"username": username, "password": password}
    response = httpx.post(f"{auth_url}/users/tokens/issue", json=body, timeout=10)
    assert response.status_code == 201, response.text
    tokens: dict[str, str] = response.json()
    return tokens


def generate(proxy: ProxyProcess, domain: str, token: str) -> httpx.Response:
    """Ask the proxy for a generation as a client would."""
    return httpx.post(
        f"{proxy.url}/{domain}/api/generate",
        json={"model": "m", "prompt": "p"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def poll(
    call: Callable[[], httpx.Response], until: Callable[[httpx.Response], bool], timeout: float = 15.0
) -> httpx.Response:
    """Repeat ``call`` until its answer satisfies ``until``; fail with the last answer at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if until(response):
            return response
        assert time.monotonic() < deadline, f"still {response.status_code}: {response.text}"
        time.sleep(0.1)  # a poll interval, not synchronisation: the condition is checked each round


def code_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("code", "")) if isinstance(body, dict) else ""
