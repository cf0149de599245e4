"""`cube chat` as a subprocess against the SCRIPTED BACKEND (the chat model) on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripted_backend import Reply, ScriptedBackend

SOURCE = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n"
DOCUMENTED = 'def area(r):\n    """Return the area of a circle of radius r."""\n    return math.pi * r * r\n'


def cube(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cube_lsp.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def settings(tmp_path: Path, scripted_backend: ScriptedBackend) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(scripted_backend.settings_json(models={"completion": "m", "chat": "chat-model"}))
    )
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "geometry.py"
    path.write_text(SOURCE)
    return path


def test_explain_prints_the_streamed_answer(source: Path, settings: Path, scripted_backend: ScriptedBackend):
    scripted_backend.script(Reply.stream("`area` returns ", "the area of a circle."))
    done = cube("chat", "explain", f"{source}:4-5", "--settings", str(settings))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "`area` returns the area of a circle.\n"
    sent = scripted_backend.requests[-1].json
    assert sent["model"] == "chat-model" and "def area(r):" in sent["messages"][-1]["content"]


def test_document_prints_then_applies_only_with_apply(
    source: Path, settings: Path, scripted_backend: ScriptedBackend
):
    answer = f"```python\n{DOCUMENTED}```"
    scripted_backend.script(Reply.stream(answer), Reply.stream(answer))
    shown = cube("chat", "document", f"{source}:4-5", "--settings", str(settings))
    assert shown.returncode == 0 and "--apply" in shown.stderr
    assert source.read_text() == SOURCE  # printed, not written
    applied = cube("chat", "document", f"{source}:4-5", "--settings", str(settings), "--apply")
    assert applied.returncode == 0, applied.stderr
    assert source.read_text() == "import math\n\n\n" + DOCUMENTED


def test_an_answer_without_code_applies_nothing(
    source: Path, settings: Path, scripted_backend: ScriptedBackend
):
    scripted_backend.script(Reply.stream("I would add a docstring saying what it returns."))
    done = cube("chat", "document", f"{source}:4-5", "--settings", str(settings), "--apply")
    assert done.returncode == 1 and "nothing to apply" in done.stderr
    assert source.read_text() == SOURCE


def test_bad_arguments_and_files_are_refused(
    source: Path, settings: Path, tmp_path: Path, scripted_backend: ScriptedBackend
):
    binary = tmp_path / "image.py"
    binary.write_bytes(b"\x89PNG\x00\x00")
    latin = tmp_path / "latin.py"
    latin.write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    for args in (
        ["chat", "document", f"{source}:9-12"],  # lines the file does not have
        ["chat", "document", f"{source}:5-4"],
        ["chat", "document", f"{source}"],  # no range
        ["chat", "explain", f"{source}:4-5", "--apply"],  # nothing to apply for explain
        ["chat", "document", f"{binary}:1-1"],
        ["chat", "document", f"{latin}:1-1"],
    ):
        done = cube(*args, "--settings", str(settings))
        assert done.returncode == 2 and done.stderr.startswith("cube: "), (args, done.stderr)
    assert scripted_backend.request_count == 0


def test_apply_refuses_a_file_changed_while_the_model_answered(
    source: Path, settings: Path, scripted_backend: ScriptedBackend
):
    scripted_backend.script(Reply.stream("```python\n", DOCUMENTED, "```", hold_before=(1,)))
    command = [sys.executable, "-m", "cube_lsp.cli", "chat", "document", f"{source}:4-5"]
    process = subprocess.Popen(
        [*command, "--settings", str(settings), "--apply"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        scripted_backend.wait_for_request(1, timeout=30)
        source.write_text(SOURCE + "\nprint(area(2))\n")  # the programmer edits the file meanwhile
        scripted_backend.release()
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1 and "changed since it was read" in stderr
    assert source.read_text() == SOURCE + "\nprint(area(2))\n"
