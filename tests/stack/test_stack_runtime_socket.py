"""`cube-stack up` as a real process: its runtime listens on no TCP port (issue 8, finding 5).

The attack: any local process found the built-in runtime's loopback TCP port and generated through it,
skipping the proxy's auth, rate limits and audit. Now the process's only TCP listeners are the proxy
and the auth API; the runtime is a 0600 socket in a 0700 directory under the data directory, under
umask 022 and 000 alike, and completions still flow through the proxy.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.stack_process import StackProcess, cube_stack_up

pytestmark = pytest.mark.slow


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def stack_up(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StackProcess]:
    data_dir = tmp_path / "data"
    with cube_stack_up(data_dir, umask=request.param) as running:
        yield running
    assert not (data_dir / "runtime" / "runtime.sock").exists()  # removed at stop


def _tcp_listeners(pid: int) -> set[tuple[str, int]]:
    root = psutil.Process(pid)
    listeners = set()
    for process in [root, *root.children(recursive=True)]:
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                listeners.add((connection.laddr.ip, connection.laddr.port))
    return listeners


def test_the_runtime_listens_on_no_tcp_port_only_on_a_private_socket(
    stack_up: StackProcess, tmp_path: Path
) -> None:
    listeners = _tcp_listeners(stack_up.process.pid)
    assert {port for _, port in listeners} == {stack_up.proxy_port, stack_up.auth_port}, listeners
    assert all(ip == "127.0.0.1" for ip, _ in listeners), listeners

    sock = stack_up.data_dir / "runtime" / "runtime.sock"
    found = os.lstat(sock)
    assert stat.S_ISSOCK(found.st_mode) and stat.S_IMODE(found.st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(sock.parent).st_mode) == 0o700
    assert found.st_uid == os.geteuid()
    assert f"runtime        : builtin at unix:{sock}\n" in stack_up.banner  # the banner says where
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), trust_env=False, timeout=30) as owner:
        tags = owner.get("http://localhost/api/tags")  # the runtime is there, for its owner
    assert tags.status_code == 200 and tags.json()["models"]

    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n")
    settings = stack_up.data_dir / "client.json"
    done = subprocess.run(
        [sys.executable, "-m", "cube_lsp.cli", "complete", "--settings", str(settings), f"{source}:2:12"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # client -> proxy (TLS, attested) -> Unix socket -> llama.cpp, for real
