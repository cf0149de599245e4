"""The VS Code extension end to end, in a real VS Code: code-server driven by headless Chromium.

Bridges four real processes: the `.vsix` built by npm, installed into code-server (with its own user
data and extensions directories); an embedded `cube-stack` (proxy with SIMULATED attestation and the
auth service) whose runtime is the SCRIPTED BACKEND, so the ghost text is known in advance; cube-lsp,
started by the extension; and the playwright-core driver in ``e2e/drive_vscode.cjs``. The shared
machinery (code-server, the stack thread, the driver protocol) is in ``vscode_harness.py``; the bad
situations are in ``test_vscode_bad_situations.py``.

``../shared/tools/setup-code-server.sh`` installs code-server, Chromium and playwright-core; the test
skips only when Chromium cannot be installed. Screenshots go to ``tests/extension/artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest

from cube_stack.stack import RunningStack
from tests.extension.vscode_harness import (
    ARTIFACTS,
    CUBE_LSP,
    FIRST_ANSWER,
    ROOT,
    RUNTIME_DOMAIN,
    Build,
    StackThread,
    answer,
    drive,
    prepare_vscode,
    run,
)
from tests.support.scripted_backend import ScriptedBackend

KEYSTROKES = 20
TOKENS = '''"""Tokens of the auth service."""


class Session:
    """A signed-in user."""

    def refresh_access_token(self, client):
        """Ask the auth service for a new access token before this one expires."""
        reply = client.post("/users/tokens/refresh", headers={"Authorization": self.refresh_token})
        self.access_token = reply["access_token"]
        return self.access_token
'''
DRIVER_TIMEOUT_S = 150

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def _attest_measurement(running: RunningStack) -> str:
    """The measurement `cube attest endpoint` prints for the running proxy."""
    cube = Path(sys.executable).with_name("cube")
    out = run(
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


def test_vscode_ghost_text_tab_status_attestation_and_stack_down(tmp_path: Path, vscode_build: Build) -> None:
    timings = dict(vscode_build.timings)
    files = {"demo.py": "def add(a, b):", "auth/tokens.py": TOKENS}
    vscode = prepare_vscode(tmp_path, vscode_build, {"cube.server.command": CUBE_LSP}, files)
    # An embedding model among the runtime's models: the stack offers it, so search embeds through it.
    backend = ScriptedBackend(domain=RUNTIME_DOMAIN, models=("qwen2.5-coder:1.5b", "nomic-embed-text"))
    with backend:
        backend.rule = answer
        stack = StackThread(vscode.stack_options(backend.url))
        running = stack.start()
        try:
            measurement = _attest_measurement(running)
            with vscode.serve() as (url, listen_s):
                timings["code-server listening"] = listen_s
                config = {"url": url, "file": "demo.py", "firstAnswer": FIRST_ANSWER}
                config["keystrokes"] = KEYSTROKES
                config |= {"searchQuery": "ask the auth service for a new access token"}
                config |= {"searchSymbol": "Session.refresh_access_token", "searchFile": "tokens.py"}
                handlers = {"stop-stack": lambda _: stack.stop()}
                events = drive(vscode, "drive_vscode.cjs", config, handlers, DRIVER_TIMEOUT_S)
        finally:
            stack.stop()

    timings["driver"] = events["done"]["_at"]
    print("\ntimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert "SIMULATED" in events["ghost-text"]["status"]
    assert FIRST_ANSWER in events["accepted"]["text"]
    assert events["attestation"]["measurement"] == measurement
    assert events["attestation"]["simulated"] == "YES"
    found = events["search"]
    top = found["rows"][0]
    assert top.startswith("Session.refresh_access_token") and "auth/tokens.py:7" in top, found
    assert found["tab"].startswith("tokens") and found["cursor"].startswith("Ln 7,"), found
    embedded = [r for r in backend.requests if r.route == "embed"]
    assert any("refresh_access_token" in text for r in embedded for text in r.json["input"])
    stopped = events["stopped"]
    assert re.search(r"Cube: [a-z]+\.[a-z_]+", stopped["status"]), stopped  # the reason's code is shown
    samples = events["latency"]["samples"]
    assert len(samples) == KEYSTROKES
    p50, p90 = _percentile(samples, 50), _percentile(samples, 90)
    print(f"keystroke -> ghost text over {len(samples)} keystrokes: p50 {p50:.0f} ms, p90 {p90:.0f} ms")
    if os.environ.get("CUBE_UPDATE_SCREENSHOTS") == "1":  # the README's pictures, refreshed on request only
        docs = ROOT / "docs" / "images"
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("ghost-text.png", "attestation.png", "search.png"):
            shutil.copyfile(ARTIFACTS / name, docs / f"vscode-{name}")
