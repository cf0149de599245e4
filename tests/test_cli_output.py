"""`cube` as a new user meets it: options before the subcommand as well as after it.

The option-order tests run against the SCRIPTED BACKEND.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripted_backend import Reply, ScriptedBackend

CUBE = [sys.executable, "-m", "cube_lsp.cli"]


def cube(*args: str, merged: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `cube`; with ``merged`` its stderr goes into the same pipe as its stdout, as on a terminal."""
    stderr = subprocess.STDOUT if merged else subprocess.PIPE
    env = os.environ | {"PYTHONUNBUFFERED": "1"}  # writes reach the pipe in the order they are made
    return subprocess.run(
        [*CUBE, *args], stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120, env=env
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "calc.py"
    path.write_text("def add(a, b):\n    return \n")
    return path


# ------------------------------------------------------------------------------------ option order


def test_options_before_the_subcommand(source: Path, tmp_path: Path, scripted_backend: ScriptedBackend):
    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(scripted_backend.settings_json()))
    scripted_backend.script(Reply.stream("a + b"))
    done = cube("--settings", str(settings), "--model", "starcoder2:3b", "complete", f"{source}:2:12")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a + b\n"
    assert scripted_backend.requests[-1].json["model"] == "starcoder2:3b"


def test_the_subcommands_own_value_wins(source: Path, tmp_path: Path, scripted_backend: ScriptedBackend):
    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(scripted_backend.settings_json()))
    scripted_backend.script(Reply.stream("a + b"))
    done = cube(
        "--settings", str(settings), "--model", "before", "complete", f"{source}:2:12", "--model", "after"
    )
    assert done.returncode == 0, done.stderr
    assert scripted_backend.requests[-1].json["model"] == "after"


def test_an_option_the_subcommand_does_not_take_is_a_usage_error(source: Path):
    done = cube("--vcek", "leaf.pem", "complete", f"{source}:2:12")
    assert done.returncode == 2
    assert "does not take --vcek" in done.stderr
    done = cube("attest", "endpoint", "https://127.0.0.1:1", "--policy", "policy.json")
    assert done.returncode == 2
    assert "requires --domain" in done.stderr
