"""Real processes for the scale-out tests: a private ``redis-server`` and ``python -m cube_stack.proxy``.

Readiness is read from each process's own output (Redis's "Ready to accept connections", the proxy's
``proxy.listening`` line), never waited for by sleeping. The machine's own Redis (6379) is never used:
every test starts its own on a free port, without persistence.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

LISTENING = re.compile(r"proxy\.listening url=(https?://127\.0\.0\.1:(\d+))")
REDIS_SERVER = shutil.which("redis-server")
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)

needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OutputReader:
    """The lines a child writes to one pipe, kept and handed out in order as they arrive."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout: float = 60.0) -> re.Match[str]:
        """Return the match of the first line from now on that matches ``pattern`` (fail on exit)."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"the process exited before {regex.pattern!r}:\n{self.text}"
            if match := regex.search(line):
                return match

    @property
    def text(self) -> str:
        """Return every line read so far."""
        return "".join(self.lines)

    def join(self) -> None:
        """Wait for the pipe to close."""
        self._thread.join(timeout=10)


class RedisServer:
    """A ``redis-server`` of the test's own, on loopback, that the test may stop and start again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._child: subprocess.Popen[str] | None = None

    def start(self) -> RedisServer:
        """Start it and return once it accepts connections."""
        assert REDIS_SERVER is not None
        argv = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self._child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = OutputReader(self._child.stdout)
        output.wait_for("Ready to accept connections", timeout=30)
        return self

    def stop(self) -> None:
        """Stop it (SIGKILL: an outage, not a shutdown)."""
        if self._child is not None:
            self._child.kill()
            self._child.wait(timeout=10)
            if self._child.stdout is not None:
                self._child.stdout.close()
            self._child = None


class ProxyProcess:
    """``python -m cube_stack.proxy`` with the SIMULATED agent, its log read line by line."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "cube_stack.proxy"],
            env=os.environ | dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = OutputReader(self._child.stderr)
        self.url = ""
        self.port = 0

    def wait_listening(self) -> ProxyProcess:
        """Return once it listens (the SIMULATED chain is RSA-4096: a few seconds)."""
        match = self.log.wait_for(LISTENING, timeout=120)
        self.url, self.port = match.group(1), int(match.group(2))
        return self

    def stop(self) -> int:
        """Send SIGTERM and return the exit status."""
        if self._child.poll() is None:
            self._child.send_signal(signal.SIGTERM)
        status = self._child.wait(timeout=30)
        self.log.join()
        if self._child.stderr is not None:
            self._child.stderr.close()
        return status


def proxy_env(state: Path, **settings: str) -> dict[str, str]:
    """Return ``CUBE_PROXY_*`` variables for a proxy on a free port with the SIMULATED agent."""
    env = {
        "CUBE_PROXY_PORT": "0",
        "CUBE_PROXY_ATTESTATION": "simulated",
        "CUBE_PROXY_ATTESTATION_STATE_DIR": str(state),
        "CUBE_PROXY_SHUTDOWN_GRACE": "1",
    }
    env.update({f"CUBE_PROXY_{name.upper()}": value for name, value in settings.items()})
    return env
