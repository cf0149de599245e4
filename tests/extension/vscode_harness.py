"""Shared machinery of the real-VS-Code tests: code-server driven by headless Chromium.

``../shared/tools/setup-code-server.sh`` installs code-server, Chromium and playwright-core; the
tests skip only when Chromium cannot be installed. Each test gets its own code-server with its own
user data and extensions directories, HOME and XDG_DATA_HOME in a temporary directory (so local
stack detection finds the test's stack and nothing of the user's), an embedded `cube-stack` whose
runtime is the SCRIPTED BACKEND, and a playwright-core driver in ``e2e/`` that reports `@@ {json}`
events on stdout; the test answers the events it handles with one line on the driver's stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cube_stack.stack import EmbeddedStack, RunningStack, StackOptions
from tests.support.scripted_backend import RecordedRequest, Reply

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editor-extension"
SETUP = ROOT.parent / "shared" / "tools" / "setup-code-server.sh"
E2E = Path(__file__).resolve().parent / "e2e"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RUNTIME_DOMAIN = "runtime"  # the proxy forwards /{domain}/api/* to ollama_url + /api/*
FIRST_ANSWER = "return a + b"
CUBE_LSP = str(Path(sys.executable).with_name("cube-lsp"))

#: The VS Code settings every test starts from (plus its own `cube.*` ones).
BASE_SETTINGS: dict[str, Any] = {
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


def setup_tools() -> dict[str, str]:
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


def run(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False)
    output = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, f"{command} failed ({done.returncode}):\n{output}"
    return done.stdout


def build_vsix() -> Path:
    npm = shutil.which("npm")
    assert npm is not None, "npm is not installed: the VS Code extension cannot be built"
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "npm_config_update_notifier": "false"}
    run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], env=env, cwd=EXTENSION)
    run([npm, "run", "package"], env=env, cwd=EXTENSION)
    vsix = EXTENSION / "cube-lsp.vsix"
    assert vsix.is_file()
    return vsix


@dataclass
class Build:
    """The tools of the setup script and the packaged extension, with how long each took."""

    tools: dict[str, str]
    vsix: Path
    timings: dict[str, float]


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


def answer(request: RecordedRequest) -> Reply | None:
    """The first completion is FIRST_ANSWER; later ones differ from each other and the line above."""
    if request.route != "generate":
        return None
    prompt = json.dumps(request.json)
    if FIRST_ANSWER not in prompt:
        return Reply.stream(FIRST_ANSWER)
    return Reply.stream(f"print(add({request.index}, {request.index}))")


@dataclass
class VSCode:
    """A prepared code-server: its folders, environment and command-line directories."""

    tools: dict[str, str]
    env: dict[str, str]
    user_data: Path
    workspace: Path
    xdg_data: Path
    dirs: list[str]

    def write_settings(self, settings: Mapping[str, Any]) -> None:
        """Write BASE_SETTINGS plus `settings` as the User and the Machine settings.json.

        The extension host of code-server is "remote": machine-scoped settings come from Machine/.
        """
        text = json.dumps({**BASE_SETTINGS, **settings}, indent=2)
        for scope in ("User", "Machine"):
            (self.user_data / scope / "settings.json").write_text(text, encoding="utf-8")

    def update_settings(self, changes: Mapping[str, Any]) -> None:
        """Change keys of the User and Machine settings.json, keeping what VS Code wrote there."""
        for scope in ("User", "Machine"):
            file = self.user_data / scope / "settings.json"
            settings = json.loads(file.read_text(encoding="utf-8") or "{}")
            settings.update(changes)
            file.write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def stack_options(self, backend_url: str) -> StackOptions:
        """A stack on free ports whose client.json is where the extension looks for it."""
        return StackOptions(
            data_dir=self.xdg_data / "cube-stack",
            port=0,
            auth_port=0,
            ollama_url=f"{backend_url}/{RUNTIME_DOMAIN}",
            argon2_fast=True,
        )

    @contextlib.contextmanager
    def serve(self) -> Iterator[tuple[str, float]]:
        """Start code-server on a free port; yield the workspace's URL and how long it took to listen."""
        args = ["--auth", "none", "--bind-addr", "127.0.0.1:0", "--disable-telemetry"]
        args += ["--disable-update-check", "--disable-workspace-trust", *self.dirs, str(self.workspace)]
        with _code_server(self.tools, self.env, args) as (url, listen_s):
            yield f"{url}/?folder={self.workspace}", listen_s


def prepare_vscode(
    tmp_path: Path, build: Build, settings: Mapping[str, Any], files: Mapping[str, str]
) -> VSCode:
    """Folders, settings and workspace `files` for one code-server, with the .vsix installed."""
    home, user_data, extensions = tmp_path / "home", tmp_path / "user-data", tmp_path / "extensions"
    workspace, xdg_data = tmp_path / "workspace", tmp_path / "home" / "xdg-data"
    for folder in (home, user_data / "User", user_data / "Machine", extensions, workspace, xdg_data):
        folder.mkdir(parents=True)
    for name, text in files.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text, encoding="utf-8")
    env = {**os.environ, "PATH": build.tools["PATH"], "HOME": str(home), "XDG_DATA_HOME": str(xdg_data)}
    env.pop("CUBE_TOKEN", None)
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    vscode = VSCode(build.tools, env, user_data, workspace, xdg_data, dirs)
    vscode.write_settings(settings)
    run([build.tools["CODE_SERVER"], *dirs, "--install-extension", str(build.vsix)], env=env)
    ARTIFACTS.mkdir(exist_ok=True)
    return vscode


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


def drive(
    vscode: VSCode,
    driver: str,
    config: Mapping[str, Any],
    handlers: Mapping[str, Callable[[dict[str, Any]], None]],
    timeout_s: float,
) -> dict[str, Any]:
    """Run the playwright driver `e2e/{driver}` on `config`; return its events by name.

    An event named in `handlers` is handled by the test, then answered with one line on stdin.
    """
    full = {
        **config,
        "artifacts": str(ARTIFACTS),
        "chromium": vscode.tools["CHROMIUM"],
        "playwrightCore": vscode.tools["PLAYWRIGHT_CORE"],
    }
    node = shutil.which("node", path=vscode.tools["PATH"])
    assert node is not None
    started = time.monotonic()
    process = subprocess.Popen(
        [node, str(E2E / driver)],
        env={**vscode.env, "CUBE_E2E": json.dumps(full)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    timer = threading.Timer(timeout_s, process.kill)
    timer.start()
    events: dict[str, Any] = {}
    log = []
    try:
        for line in process.stdout:
            log.append(line)
            if not line.startswith("@@ "):
                continue
            event = json.loads(line[3:])
            event["_at"] = time.monotonic() - started
            events[event["event"]] = event
            handler = handlers.get(event["event"])
            if handler is not None:
                handler(event)
                process.stdin.write("done\n")
                process.stdin.flush()
        process.wait(30)
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        process.stdin.close()
        process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert process.returncode == 0 and "done" in events, f"{driver} failed:\n" + "".join(log) + stderr[-3000:]
    return events
