"""The built-in runtime on a private Unix socket (issue 8, finding 5), with real sockets and processes.

The attack: any local process generated through the runtime's loopback TCP port, skipping the proxy's
auth, rate limits and audit. On a socket of mode 0600 in a 0700 directory only its owner gets in: another
user's ``curl --unix-socket`` is refused (checked for real when the tests run as root), the modes hold
under umask 022 and 000, and the file is gone after stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cube_stack.runtime import (
    DEMO_MODEL_NAME,
    BuiltinRuntime,
    BuiltinSettings,
    RuntimeSettingsError,
    SocketInUseError,
    SocketPathTooLongError,
)
from cube_stack.unix_socket import MAX_PATH_BYTES, bind_private_unix, unix_socket_path

pytestmark = pytest.mark.slow

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _settings(model: Path, sock: Path) -> BuiltinSettings:
    return BuiltinSettings(models={DEMO_MODEL_NAME: model}, socket_path=sock, n_threads=1)


def _client(sock: Path) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60, trust_env=False)


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_the_socket_is_0600_in_a_0700_directory_and_goes_at_stop(
    demo_model_path: Path, tmp_path: Path, umask: int
) -> None:
    sock = tmp_path / "data" / "runtime" / "runtime.sock"
    runtime = BuiltinRuntime(_settings(demo_model_path, sock))
    with _umask(umask):
        await runtime.start()
    try:
        assert runtime.base_url == f"unix:{sock}"
        assert unix_socket_path(runtime.base_url) == str(sock)
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        assert _mode(sock) == 0o600 and _mode(sock.parent) == 0o700
        assert await runtime.probe()
        async with _client(sock) as client:
            generated = await client.post(
                "/api/generate",
                json={
                    "model": DEMO_MODEL_NAME,
                    "prompt": "x",
                    "stream": False,
                    "options": {"num_predict": 2},
                },
            )
        assert generated.status_code == 200 and generated.json()["done"] is True
    finally:
        await runtime.stop()
    assert not sock.exists()
    assert not await runtime.probe()


async def test_an_existing_wide_directory_is_made_0700(demo_model_path: Path, tmp_path: Path) -> None:
    directory = tmp_path / "runtime"
    directory.mkdir()
    directory.chmod(0o755)
    runtime = BuiltinRuntime(_settings(demo_model_path, directory / "runtime.sock"))
    await runtime.start()
    try:
        assert _mode(directory) == 0o700
    finally:
        await runtime.stop()


NEEDS_ROOT = os.geteuid() != 0 or shutil.which("curl") is None


@pytest.mark.skipif(NEEDS_ROOT, reason="needs root (to act as user nobody) and curl")
async def test_another_local_user_cannot_generate_through_the_socket(demo_model_path: Path) -> None:
    # A world-traversable tree (not pytest's 0700 tmp), so only the runtime's own modes stand in the way.
    top = Path(tempfile.mkdtemp(prefix="cube-sock-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        sock = top / "runtime" / "runtime.sock"
        runtime = BuiltinRuntime(_settings(demo_model_path, sock))
        await runtime.start()
        try:
            assert await _curl_as_nobody(sock) != 0  # the directory (0700) stops it
            os.chmod(sock.parent, 0o755)
            assert await _curl_as_nobody(sock) != 0  # and so does the socket's own mode (0600)
            os.chmod(sock, 0o666)  # the control: what uvicorn's uds= would have left
            assert await _curl_as_nobody(sock) == 0  # proves the probe can succeed, so the refusals are real
        finally:
            await runtime.stop()
    finally:
        shutil.rmtree(top)


async def _curl_as_nobody(sock: Path) -> int:
    """Return curl's exit status fetching /api/tags through ``sock`` as user nobody (0: it got in)."""
    command = [
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-f",
        "--unix-socket",
        str(sock),
        "http://localhost/api/tags",
    ]
    done = await asyncio.to_thread(  # in a thread: the runtime answers from this test's event loop
        subprocess.run,
        command,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode


async def test_a_stale_socket_file_is_replaced(demo_model_path: Path, tmp_path: Path) -> None:
    sock = tmp_path / "runtime" / "runtime.sock"
    sock.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # a runtime that died without removing its file
    dead.close()
    runtime = BuiltinRuntime(_settings(demo_model_path, sock))
    await runtime.start()
    try:
        assert await runtime.probe()
    finally:
        await runtime.stop()


async def test_a_live_socket_is_left_alone_and_start_fails_with_a_code(
    demo_model_path: Path, tmp_path: Path
) -> None:
    sock = tmp_path / "runtime" / "runtime.sock"
    live = bind_private_unix(sock)
    try:
        runtime = BuiltinRuntime(_settings(demo_model_path, sock))
        with pytest.raises(SocketInUseError) as raised:
            await runtime.start()
        assert raised.value.code == "runtime.socket_in_use"
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(sock))  # the other server still has its socket
        client.close()
    finally:
        live.close()
    assert not sock.exists()


async def test_a_file_that_is_not_a_socket_is_never_removed(demo_model_path: Path, tmp_path: Path) -> None:
    sock = tmp_path / "runtime" / "runtime.sock"
    sock.parent.mkdir(mode=0o700)
    sock.write_text("someone's data")
    runtime = BuiltinRuntime(_settings(demo_model_path, sock))
    with pytest.raises(RuntimeSettingsError) as raised:
        await runtime.start()
    assert raised.value.code == "runtime.settings_invalid" and raised.value.field == "socket_path"
    assert sock.read_text() == "someone's data"


def test_a_socket_path_beyond_the_limit_is_refused_naming_it(tmp_path: Path) -> None:
    fits = _path_of_length(tmp_path, MAX_PATH_BYTES)
    listener = bind_private_unix(fits)  # the longest path the kernel takes, for real
    listener.close()
    too_long = _path_of_length(tmp_path, MAX_PATH_BYTES + 1)
    with pytest.raises(SocketPathTooLongError) as raised:
        BuiltinSettings(models={"m": tmp_path / "m.gguf"}, socket_path=too_long)
    assert raised.value.code == "runtime.socket_path_too_long" and raised.value.field == "socket_path"
    assert str(MAX_PATH_BYTES) in raised.value.message  # the limit is named, so the user can act on it


def _path_of_length(base: Path, size: int) -> Path:
    directory = base / "d"
    directory.mkdir(exist_ok=True)
    name = "s" * (size - len(os.fsencode(str(directory))) - 1)
    path = directory / name
    assert len(os.fsencode(str(path))) == size
    return path


def test_a_relative_socket_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = BuiltinSettings(models={"m": tmp_path / "m.gguf"}, socket_path=Path("rt/runtime.sock"))
    assert settings.socket_path == tmp_path / "rt" / "runtime.sock"
