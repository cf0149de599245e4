"""Bad situations of the VS Code extension, in a real VS Code (code-server driven by headless Chromium).

One code-server session, driven by ``e2e/drive_bad_situations.cjs`` with the machinery of
``vscode_harness.py`` (shared with ``test_vscode_e2e.py``):

1. cube-lsp missing at start (`cube.server.command` names a file that does not exist): exactly one
   error notification, with "How to install", not one per keystroke; the editor keeps working. Then
   a cube-lsp that crashes at start is put at that path: after "Cube: Restart Server", exactly one
   notification again, and typing goes on. Then the real cube-lsp is installed there (a wrapper
   script, as a venv's console script is): "Cube: Restart Server" brings ghost text and SIMULATED.
2. A setting of the wrong type (`cube.completion.debounceMs: "fast"`): one message naming the field,
   and completions keep working on the default.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.extension.vscode_harness import (
    CUBE_LSP,
    FIRST_ANSWER,
    RUNTIME_DOMAIN,
    Build,
    StackThread,
    answer,
    drive,
    prepare_vscode,
)
from tests.support.scripted_backend import ScriptedBackend

DRIVER_TIMEOUT_S = 180
#: A cube-lsp that dies before answering `initialize`, as a broken install does.
CRASHING = "#!/bin/sh\necho 'cube-lsp: ImportError: a broken install' >&2\nexit 3\n"


def _install(path: Path, script: str) -> None:
    """Put an executable `script` at `path` (replacing what is there), as an install would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".new")
    temporary.write_text(script, encoding="utf-8")
    temporary.chmod(0o755)
    temporary.replace(path)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def test_vscode_missing_server_then_fixed_and_a_setting_of_the_wrong_type(
    tmp_path: Path, vscode_build: Build
) -> None:
    started = time.monotonic()
    missing = tmp_path / "bin" / "cube-lsp"
    files = {"demo.py": "def add(a, b):"}
    vscode = prepare_vscode(tmp_path, vscode_build, {"cube.server.command": str(missing)}, files)
    backend = ScriptedBackend(domain=RUNTIME_DOMAIN)
    handlers = {
        "install-crashing": lambda _: _install(missing, CRASHING),
        "install-working": lambda _: _install(missing, f'#!/bin/sh\nexec "{CUBE_LSP}" "$@"\n'),
        "bad-setting": lambda _: vscode.update_settings({"cube.completion.debounceMs": "fast"}),
    }
    with backend:
        backend.rule = answer
        stack = StackThread(vscode.stack_options(backend.url))
        stack.start()
        try:
            with vscode.serve() as (url, _):
                config = {"url": url, "file": "demo.py", "firstAnswer": FIRST_ANSWER}
                config["failureShot"] = "bad-situations-failure.png"
                events = drive(vscode, "drive_bad_situations.cjs", config, handlers, DRIVER_TIMEOUT_S)
        finally:
            stack.stop()
    print(f"\nbad situations: {time.monotonic() - started:.1f} s (driver {events['done']['_at']:.1f} s)")

    # 1. One notification, with the install action, naming what was tried; the editor kept working.
    shown = events["missing"]
    assert len(shown["toasts"]) == 1, shown
    assert "cube-lsp did not start" in shown["toasts"][0] and str(missing) in shown["toasts"][0], shown
    assert "How to install" in shown["buttons"], shown
    assert "not connected" in shown["status"], shown
    assert "typed while cube-lsp is missing" in shown["editor"], shown
    assert "Preview" in events["how-to-install"]["tab"]
    crashed = events["crashed"]
    assert len(crashed["toasts"]) == 1, crashed
    assert "cube-lsp did not start" in crashed["toasts"][0] and "ENOENT" not in crashed["toasts"][0], crashed
    assert "not connected" in crashed["status"], crashed
    assert "typed while cube-lsp crashes at start" in crashed["editor"], crashed
    fixed = events["fixed"]
    assert "SIMULATED" in fixed["status"] and FIRST_ANSWER in fixed["ghost"], fixed

    # 2. One message naming the field; completions on the default debounce.
    invalid = events["bad-setting-shown"]
    assert len(invalid["toasts"]) == 1, invalid
    assert "completion.debounceMs" in invalid["toasts"][0], invalid
    assert all(ghost.strip() for ghost in invalid["ghosts"]), invalid
    assert "SIMULATED" in invalid["status"], invalid
