"""Fixtures for the editor tests: the set-up snippets of docs/editors.md, and what an editor needs to run."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.scripted_backend import ScriptedBackend

DOC = Path(__file__).resolve().parents[2] / "docs" / "editors.md"
SNIPPET_PATTERN = re.compile(r"<!-- snippet: (?P<name>[\w-]+) -->\n```\w*\n(?P<body>.*?)\n```", re.S)
EDITOR_TIMEOUT_S = 60  # a bound on the whole editor run; the editor itself polls with its own bound


def snippet(name: str) -> str:
    """Return the fenced block after ``<!-- snippet: NAME -->`` in docs/editors.md (exactly one)."""
    found = [
        m["body"] for m in SNIPPET_PATTERN.finditer(DOC.read_text(encoding="utf-8")) if m["name"] == name
    ]
    assert len(found) == 1, f"docs/editors.md has {len(found)} snippets named {name!r}"
    return found[0] + "\n"


def editor(binary: str) -> str:
    """Return the editor's path; FAIL (not skip) without it, since .ci/run installs it."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed; .ci/run installs it (apt-get install neovim emacs-nox ...)")
    return path


@pytest.fixture
def editor_env(scripted_backend: ScriptedBackend, tmp_path: Path) -> dict[str, str]:
    """Environment for an editor: CUBE_SETTINGS names the backend's settings, and this cube-lsp is on PATH."""
    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(scripted_backend.settings_json()))  # attestation off on loopback
    home = tmp_path / "home"
    home.mkdir()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return os.environ | {"CUBE_SETTINGS": str(settings), "PATH": path, "HOME": str(home)}


@pytest.fixture
def calc_py(tmp_path: Path) -> Path:
    """A Python file whose line 2 ends where the completion goes."""
    path = tmp_path / "project" / "calc.py"
    path.parent.mkdir()
    path.write_text("def add(a, b):\n    return \n")
    return path
