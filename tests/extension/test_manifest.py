"""The VS Code extension's manifest against its sources: commands, activation and what gets packaged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

EXTENSION = Path(__file__).resolve().parents[2] / "editor-extension"


def _manifest() -> Any:
    return json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))


def test_contributed_commands_are_the_command_table() -> None:
    source = (EXTENSION / "src" / "commands.ts").read_text(encoding="utf-8")
    table = re.search(r"export const COMMANDS: CubeCommand\[\] = \[(.*?)\n\];", source, re.S)
    assert table is not None, "COMMANDS table not found in src/commands.ts"
    registered = re.findall(r'id: "(cube\.[A-Za-z]+)"', table.group(1))
    contributed = [c["command"] for c in _manifest()["contributes"]["commands"]]
    assert sorted(registered) == sorted(contributed)
    assert all(c["title"] and c["category"] == "Cube" for c in _manifest()["contributes"]["commands"])


def test_the_server_accept_command_is_left_to_the_language_client() -> None:
    # cube-lsp advertises cube.acceptCompletion; vscode-languageclient registers it. Registering it
    # here as well would make the second registration fail.
    contributed = [c["command"] for c in _manifest()["contributes"]["commands"]]
    assert "cube.acceptCompletion" not in contributed


def test_activation_is_not_eager_and_the_bundle_is_the_entry_point() -> None:
    manifest = _manifest()
    assert "*" not in manifest["activationEvents"]
    assert manifest["main"] == "./dist/extension.js"


def test_the_package_holds_the_bundle_only() -> None:
    ignore = (EXTENSION / ".vscodeignore").read_text(encoding="utf-8").split()
    assert ignore[0] == "**", "everything is excluded first, then the bundle and manifest are let in"
    assert "!dist/extension.js" in ignore
    assert not any(line.startswith("!src") or line.endswith(".map") for line in ignore)
