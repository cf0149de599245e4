"""docs/editors.md: every snippet is one a test runs, and the Helix one is a set-up Helix can read."""

from __future__ import annotations

import re
import shutil
import tomllib

from tests.editors.conftest import DOC, SNIPPET_PATTERN, snippet

TESTED = {"neovim", "emacs", "helix"}  # test_neovim.py, test_emacs.py, and the Helix check below


def test_every_fenced_block_is_a_named_snippet_a_test_runs():
    text = DOC.read_text(encoding="utf-8")
    fences = re.findall(r"^```\w*$", text, re.M)
    named = [m["name"] for m in SNIPPET_PATTERN.finditer(text)]
    assert sorted(named) == sorted(TESTED)
    assert len(fences) == 2 * len(named), "a fenced block in docs/editors.md has no snippet marker"


def test_the_helix_snippet_runs_cube_lsp_with_a_settings_file():
    # Helix itself is not installed here: check what it would read.
    config = tomllib.loads(snippet("helix"))
    server = config["language-server"]["cube-lsp"]
    assert shutil.which(server["command"]) is not None
    assert server["args"][0] == "--settings" and server["args"][1].endswith("client.json")
    python = next(language for language in config["language"] if language["name"] == "python")
    assert "cube-lsp" in python["language-servers"]
