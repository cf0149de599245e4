"""The VS Code extension end to end, in a real VS Code: code-server driven by headless Chromium.

Bridges four real processes: the `.vsix` built by npm, installed into code-server (with its own user
data and extensions directories); an embedded `cube-stack` (proxy with SIMULATED attestation and the
auth service) whose runtime is the SCRIPTED BACKEND, so the ghost text is known in advance; cube-lsp,
started by the extension; and the playwright-core driver in ``e2e/drive_vscode.cjs``. code-server
runs with HOME and XDG_DATA_HOME in a temporary directory, so the extension's local-stack detection
(platformdirs' user_data_path("cube-stack")) finds this test's stack and nothing of the user's.

``../shared/tools/setup-code-server.sh`` installs code-server, Chromium and playwright-core; the test
skips only when Chromium cannot be installed. Screenshots go to ``tests/extension/artifacts/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cube_stack.stack import EmbeddedStack, RunningStack, StackOptions
from tests.support.scripted_backend import RecordedRequest, Reply, ScriptedBackend

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editor-extension"
SETUP = ROOT.parent / "shared" / "tools" / "setup-code-server.sh"
DRIVER = Path(__file__).resolve().parent / "e2e" / "drive_vscode.cjs"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RUNTIME_DOMAIN = "runtime"  # the proxy forwards /{domain}/api/* to ollama_url + /api/*
FIRST_ANSWER = "return a + b"
KEYSTROKES = 20
DRIVER_TIMEOUT_S = 150

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _setup_tools() -> dict[str, str]:
    """Run the setup script; return CODE_SERVER, PLAYWRIGHT_CORE, CHROMIUM and the PATH it wants."""
    done = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0 and shutil.which("chromium") is None:
        pytest.skip("Chromium cannot be installed here (setup-code-server.sh failed): no real-VS-Code test")
    assert done.returncode == 0, f"setup-code-server.sh failed:\n{done.stdout}{done.stderr}"
    tools: dict[str, str] = {}
    for line in done.stdout.splitlines():
        if line.startswith("export PATH="):
            tools["PATH"] = line.removeprefix("export PATH=").replace("$PATH", os.environ["PATH"])
        elif "=" in line:
            key, value = line.split("=", 1)
            tools[key] = value
    if not tools.get("CHROMIUM"):
        pytest.skip("Chromium cannot be installed here: no real-VS-Code test")
    return tools


def _run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)
    output = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{output}"
    return done.stdout


def _build_vsix() -> Path:
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed: the VS Code extension cannot be built"
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false"}
    _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], env=env, cwd=EXTENSION)
    _run([npm, "run", "package"], env=env, cwd=EXTENSION)
    vsix = EXTENSION / "cube-lsp.vsix"
    assert vsix.is_file()
    return vsix


class StackThread:
    """An EmbeddedStack on its own event loop in a thread, so the test can stop it mid-way."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.running: RunningStack | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cube-stack", daemon=True)

    def start(self) -> RunningStack:
        self._thread.start()
        assert self._started.wait(120), "the stack did not start in 120 s"
        if self._error is not None:
            raise self._error
        assert self.running is not None
        return self.running

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the stack did not stop in 60 s"
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:  # reported by start() / stop() in the test's thread
            self._error = error
        finally:
            self._started.set()
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with EmbeddedStack(self.options) as running:
            self.running = running
            self._started.set()
            await self._stop.wait()


def _answer(request: RecordedRequest) -> Reply | None:
    """The first completion is FIRST_ANSWER; later ones differ from each other and the line above."""
    if request.route != "generate":
        return None
    prompt = json.dumps(request.json)
    if FIRST_ANSWER not in prompt:
        return Reply.stream(FIRST_ANSWER)
    return Reply.stream(f"print(add({request.index}, {request.index}))")


@contextlib.contextmanager
def _code_server(tools: dict[str, str], env: dict[str, str], args: list[str]) -> Iterator[tuple[str, float]]:
    """Start code-server on a free port; yield its URL and how long it took to listen."""
    started = time.monotonic()
    process = subprocess.Popen(
        [tools["CODE_SERVER"], *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    try:
        url = None
        seen = []
        for line in process.stdout:  # code-server logs this line once it accepts connections
            seen.append(line)
            match = re.search(r"HTTP server listening on (http://\S+?)/?\s*$", line)
            if match:
                url = match.group(1)
                break
        assert url, "code-server did not start:\n" + "".join(seen)
        drain = threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True)
        drain.start()
        yield url, time.monotonic() - started
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def _attest_measurement(running: RunningStack) -> str:
    """The measurement `cube attest endpoint` prints for the running proxy."""
    cube = Path(sys.executable).with_name("cube")
    out = _run(
        [
            str(cube),
            "attest",
            "endpoint",
            running.endpoint,
            "--domain",
            running.domain_id,
            "--policy",
            str(running.paths["policy"]),
            "--ca-bundle",
            str(running.paths["certificate"]),
        ]
    )
    match = re.search(r"^measurement\s+([0-9a-f]{96})$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


def _percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def test_vscode_ghost_text_tab_status_attestation_and_stack_down(tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    clock = time.monotonic()
    tools = _setup_tools()
    timings["setup script"] = time.monotonic() - clock

    clock = time.monotonic()
    vsix = _build_vsix()
    timings["npm ci + package"] = time.monotonic() - clock

    home, user_data, extensions = tmp_path / "home", tmp_path / "user-data", tmp_path / "extensions"
    workspace, xdg_data = tmp_path / "workspace", tmp_path / "home" / "xdg-data"
    for folder in (home, user_data / "User", user_data / "Machine", extensions, workspace, xdg_data):
        folder.mkdir(parents=True)
    (workspace / "demo.py").write_text("def add(a, b):", encoding="utf-8")
    settings = {
        "cube.server.command": str(Path(sys.executable).with_name("cube-lsp")),
        "security.workspace.trust.enabled": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "telemetry.telemetryLevel": "off",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "update.mode": "none",
        "editor.inlineSuggest.enabled": True,
        "workbench.secondarySideBar.defaultVisibility": "hidden",  # no chat panel in the screenshots
    }
    # The extension host of code-server is "remote": machine-scoped settings come from Machine/.
    for scope in ("User", "Machine"):
        (user_data / scope / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    env = {**os.environ, "PATH": tools["PATH"], "HOME": str(home), "XDG_DATA_HOME": str(xdg_data)}
    env.pop("CUBE_TOKEN", None)
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    _run([tools["CODE_SERVER"], *dirs, "--install-extension", str(vsix)], env=env)

    ARTIFACTS.mkdir(exist_ok=True)
    backend = ScriptedBackend(domain=RUNTIME_DOMAIN)
    with backend:
        backend.rule = _answer
        stack = StackThread(
            StackOptions(
                data_dir=xdg_data / "cube-stack",
                port=0,
                auth_port=0,
                ollama_url=f"{backend.url}/{RUNTIME_DOMAIN}",
                argon2_fast=True,
            )
        )
        running = stack.start()
        try:
            measurement = _attest_measurement(running)
            serve = ["--auth", "none", "--bind-addr", "127.0.0.1:0", "--disable-telemetry"]
            serve += ["--disable-update-check", "--disable-workspace-trust", *dirs, str(workspace)]
            with _code_server(tools, env, serve) as (url, listen_s):
                timings["code-server listening"] = listen_s
                events = _drive(tools, env, f"{url}/?folder={workspace}", stack)
        finally:
            stack.stop()

    timings["driver"] = events["done"]["_at"]
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert "SIMULATED" in events["ghost-text"]["status"]
    assert FIRST_ANSWER in events["accepted"]["text"]
    assert events["attestation"]["measurement"] == measurement
    assert events["attestation"]["simulated"] == "YES"
    stopped = events["stopped"]
    assert re.search(r"Cube: [a-z]+\.[a-z_]+", stopped["status"]), stopped  # the reason's code is shown
    samples = events["latency"]["samples"]
    assert len(samples) == KEYSTROKES
    p50, p90 = _percentile(samples, 50), _percentile(samples, 90)
    print(f"keystroke -> ghost text over {len(samples)} keystrokes: p50 {p50:.0f} ms, p90 {p90:.0f} ms")
    if os.environ.get("CUBE_UPDATE_SCREENSHOTS") == "1":  # the README's pictures, refreshed on request only
        docs = ROOT / "docs" / "images"
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("ghost-text.png", "attestation.png"):
            shutil.copyfile(ARTIFACTS / name, docs / f"vscode-{name}")


def _drive(tools: dict[str, str], env: dict[str, str], url: str, stack: StackThread) -> dict[str, Any]:
    """Run the playwright driver; stop the stack when it asks; return its events by name."""
    config = {
        "url": url,
        "file": "demo.py",
        "firstAnswer": FIRST_ANSWER,
        "keystrokes": KEYSTROKES,
        "artifacts": str(ARTIFACTS),
        "chromium": tools["CHROMIUM"],
        "playwrightCore": tools["PLAYWRIGHT_CORE"],
    }
    node = shutil.which("node", path=tools["PATH"])
    assert node is not None
    started = time.monotonic()
    driver = subprocess.Popen(
        [node, str(DRIVER)],
        env={**env, "CUBE_E2E": json.dumps(config)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdin is not None and driver.stdout is not None
    timer = threading.Timer(DRIVER_TIMEOUT_S, driver.kill)
    timer.start()
    events: dict[str, Any] = {}
    log = []
    try:
        for line in driver.stdout:
            log.append(line)
            if not line.startswith("@@ "):
                continue
            event = json.loads(line[3:])
            event["_at"] = time.monotonic() - started
            events[event["event"]] = event
            if event["event"] == "stop-stack":
                stack.stop()
                driver.stdin.write("stopped\n")
                driver.stdin.flush()
        driver.wait(30)
    finally:
        timer.cancel()
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        stderr = driver.stderr.read() if driver.stderr else ""
        driver.stdin.close()
        driver.stdout.close()
        if driver.stderr:
            driver.stderr.close()
    assert driver.returncode == 0 and "done" in events, "driver failed:\n" + "".join(log) + stderr[-3000:]
    return events
