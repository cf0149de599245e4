"""`cube-stack up` as a real process for tests: on free ports, read from its banner, stopped by Ctrl-C.

The banner is printed once everything listens, so reading up to its last line ("Try it:") is the
readiness signal; no polling, no sleeping.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_PROXY = re.compile(r"proxy endpoint\s*:\s*(\S+)")
_AUTH = re.compile(r"auth API\s*:\s*(\S+)")


@dataclass
class StackProcess:
    """A running `cube-stack up` and what its banner said."""

    process: subprocess.Popen[str]
    data_dir: Path
    banner: str
    stderr: str = ""  # filled in when the process has stopped

    @property
    def proxy_url(self) -> str:
        """Return the proxy's base URL."""
        return _search(_PROXY, self.banner)

    @property
    def auth_url(self) -> str:
        """Return the auth API's base URL."""
        return _search(_AUTH, self.banner)

    @property
    def proxy_port(self) -> int:
        """Return the proxy's port."""
        return _port(self.proxy_url)

    @property
    def auth_port(self) -> int:
        """Return the auth API's port."""
        return _port(self.auth_url)


def _search(pattern: re.Pattern[str], banner: str) -> str:
    match = pattern.search(banner)
    assert match, banner
    return match.group(1)


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


@contextlib.contextmanager
def cube_stack_up(
    data_dir: Path, *, umask: int | None = None, args: Sequence[str] = ()
) -> Iterator[StackProcess]:
    """Run `cube-stack up --data-dir DATA_DIR --port 0 --auth-port 0 --no-ollama`; stop it with SIGINT.

    On leaving the block the process must exit 0 after Ctrl-C; its stderr is then in ``.stderr``.
    """
    command = [sys.executable, "-m", "cube_stack.cli", "up", "--data-dir", str(data_dir)]
    command += ["--port", "0", "--auth-port", "0", "--no-ollama", *args]
    pipe = subprocess.PIPE
    extra = {} if umask is None else {"umask": umask}
    process = subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, **extra)  # type: ignore[call-overload]
    assert process.stdout is not None and process.stderr is not None
    try:
        lines = []
        for line in process.stdout:  # blocks until the banner: the stack prints it once it listens
            lines.append(line)
            if line.startswith("Try it:"):
                break
        banner = "".join(lines)
        if "cube-stack is up" not in banner:
            process.kill()
            raise AssertionError(banner + process.stderr.read())
        running = StackProcess(process, data_dir, banner)
        yield running
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        running.stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def wait_for_line(process: subprocess.Popen[str], prefix: str) -> None:
    """Read the child's stderr until a line starts with ``prefix``; fail with its status if it ends."""
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(prefix):
            return
    raise AssertionError(f"exited {process.wait()} before {prefix!r}")
