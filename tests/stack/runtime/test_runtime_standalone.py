"""``python -m cube_stack.runtime`` (= ``cube-stack runtime serve``): the runtime as its own process.

A real process on a real Unix socket with the generated demo model (random weights, real llama.cpp):
it says where it listens once the models are loaded, answers through that socket only, and stops
cleanly on SIGTERM, removing its socket.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cube_stack.runtime", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )


def ready_url(process: subprocess.Popen[str]) -> str:
    """Read stderr until the ready line; the process has loaded its models when it prints it."""
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("runtime ready: "):
            return line.removeprefix("runtime ready: ").strip()
    raise AssertionError(f"exited {process.wait()} before ready:\n{''.join(seen)}")


def test_serves_on_its_socket_and_stops_on_sigterm(tmp_path: Path) -> None:
    socket = tmp_path / "run" / "runtime.sock"
    # Every setting from the environment, as a systemd unit's EnvironmentFile gives them.
    env = {"CUBE_RUNTIME_DEMO_DIR": str(tmp_path / "models"), "CUBE_RUNTIME_SOCKET": str(socket)}
    env |= {"CUBE_RUNTIME_MINILM": "0", "CUBE_RUNTIME_THREADS": "1"}
    process = start(env=env)
    try:
        assert ready_url(process) == f"unix:{socket}"
        assert oct(socket.stat().st_mode & 0o777) == "0o600"
        assert oct(socket.parent.stat().st_mode & 0o777) == "0o700"
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://runtime", timeout=60) as client:
            tags = client.get("/api/tags").json()
            assert [m["name"] for m in tags["models"]] == ["cube-demo:random"]
            body = {"model": "cube-demo:random", "prompt": "def add(a, b):", "stream": False}
            body["options"] = {"num_predict": 4, "temperature": 0}
            answer = client.post("/api/generate", json=body).json()
            assert answer["done"] is True and isinstance(answer["response"], str)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert not socket.exists()


def test_flags_win_and_bad_settings_say_what_is_wrong(tmp_path: Path) -> None:
    no_model = subprocess.run(
        [sys.executable, "-m", "cube_stack.runtime", "--socket", str(tmp_path / "r.sock")],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("CUBE_RUNTIME_")},
        timeout=60,
    )
    assert no_model.returncode == 2 and "--model NAME=GGUF" in no_model.stderr
    bad_pair = subprocess.run(
        [sys.executable, "-m", "cube_stack.runtime", "--model", "just-a-path.gguf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_pair.returncode == 2 and "wanted NAME=PATH" in bad_pair.stderr
    bad_listen = subprocess.run(
        [sys.executable, "-m", "cube_stack.runtime", "--demo", str(tmp_path), "--listen", "localhost"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_listen.returncode == 2 and "wanted HOST:PORT" in bad_listen.stderr


def test_cube_stack_runtime_serve_is_the_same_command(capsys: pytest.CaptureFixture[str]) -> None:
    from cube_stack.cli import main as cube_stack_main

    assert cube_stack_main(["runtime", "serve", "--model", "no-equals-sign"]) == 2
    assert "wanted NAME=PATH" in capsys.readouterr().err
