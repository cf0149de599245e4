"""Emacs in batch mode with the eglot set-up from docs/editors.md connects to cube-lsp.

Debian 12 has Emacs 28 with `elpa-eglot` (eglot 1.9); Emacs 29+ has eglot built in. cube-lsp talks to
the SCRIPTED BACKEND (attestation off on loopback). eglot connects synchronously; the wait for the
cube/status notification happens inside Emacs (`accept-process-output` with a bound), and the test reads
what Emacs printed as JSON.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.editors.conftest import EDITOR_TIMEOUT_S, editor, snippet
from tests.support.scripted_backend import ScriptedBackend

pytestmark = pytest.mark.e2e

# Loaded after the set-up: open the file, connect as M-x eglot would, wait for cube/status, print the
# server's capabilities and the status as one JSON line, and leave.
DRIVE = r"""
(require 'json)
(setq eglot-sync-connect 20 eglot-connect-timeout 30)
(find-file (getenv "CUBE_TEST_FILE"))
(python-mode)
(call-interactively #'eglot)
(let ((deadline (+ (float-time) 20)))
  (while (and (null cube-lsp-status) (< (float-time) deadline))
    (accept-process-output nil 0.05)))
(let* ((server (eglot-current-server))
       (result (list :connected (if server t :json-false)
                     :server (and server (plist-get (eglot--server-info server) :name))
                     :completion (if (eglot--server-capable :completionProvider) t :json-false)
                     :status (or cube-lsp-status :json-false))))
  (princ (concat "CUBE-TEST " (json-encode result) "\n"))
  (when server (eglot-shutdown server))
  (kill-emacs 0))
"""


def test_emacs_eglot_connects_and_gets_the_capabilities(
    scripted_backend: ScriptedBackend, editor_env: dict[str, str], calc_py: Path, tmp_path: Path
):
    emacs = editor("emacs")
    config = tmp_path / "cube-eglot.el"
    config.write_text(snippet("emacs"))
    drive = tmp_path / "drive.el"
    drive.write_text(DRIVE)
    done = subprocess.run(
        [emacs, "--batch", "-l", str(config), "-l", str(drive)],
        env=editor_env | {"CUBE_TEST_FILE": str(calc_py)},
        cwd=calc_py.parent,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=EDITOR_TIMEOUT_S,
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("CUBE-TEST ")]
    assert done.returncode == 0 and lines, f"emacs exit {done.returncode}: {done.stdout}{done.stderr}"
    result = json.loads(lines[0].removeprefix("CUBE-TEST "))
    assert result["connected"] is True, result
    assert result["server"] == "cube-lsp"
    assert result["completion"] is True  # eglot has no inline completion: the fallback is offered
    assert result["status"]["state"] == "ready", result
    assert result["status"]["attestation"]["mode"] == "off"
