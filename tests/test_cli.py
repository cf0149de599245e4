"""`cube complete` as a subprocess against the SCRIPTED BACKEND on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripted_backend import Reply, ScriptedBackend


def cube(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cube_lsp.cli", *args], capture_output=True, text=True, timeout=60, env=env
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "calc.py"
    path.write_text("def add(a, b):\n    return \n")
    return path


def test_complete_prints_the_completion_with_flags(source: Path, scripted_backend: ScriptedBackend):
    scripted_backend.script(Reply.stream("a ", "+ b"))
    done = cube(
        "complete",
        f"{source}:2:12",
        "--endpoint",
        scripted_backend.url,
        "--domain",
        scripted_backend.domain,
        "--token",
        scripted_backend.token,
        "--model",
        "starcoder2:3b",
        "--attestation",
        "off",  # a plain-HTTP loopback dev backend
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a + b\n"
    sent = scripted_backend.requests[-1].json
    assert sent["model"] == "starcoder2:3b"
    assert sent["prompt"].endswith("    return ")


def test_complete_reads_a_settings_file(source: Path, tmp_path: Path, scripted_backend: ScriptedBackend):
    scripted_backend.script(Reply.stream("a + b"))
    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(scripted_backend.settings_json(api="openai")))
    done = cube("--version")
    assert done.stdout.startswith("cube ")
    done = cube("complete", f"{source}:2:12", "--settings", str(settings))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "a + b\n"
    assert scripted_backend.requests[-1].path.endswith("/v1/completions")


def test_complete_errors_are_clear_and_exit_nonzero(source: Path, scripted_backend: ScriptedBackend):
    base = ["--endpoint", scripted_backend.url, "--domain", scripted_backend.domain, "--attestation", "off"]
    wrong_token = cube("complete", f"{source}:2:12", *base, "--token", "nope")
    assert wrong_token.returncode == 3
    assert "proxy.unauthorized" in wrong_token.stderr
    assert "nope" not in wrong_token.stderr
    assert cube("complete", f"{source}:0:1", *base).returncode == 2
    assert cube("complete", f"{source}:99:1", *base).returncode == 2
    assert cube("complete", f"{source}.missing:1:1", *base).returncode == 2
    assert cube("complete", f"{source}:2:12").returncode == 2  # no endpoint configured
    binary = source.with_suffix(".bin")
    binary.write_bytes(b"\x00\x01\x02")
    assert cube("complete", f"{binary}:1:1", *base).returncode == 2
    latin1 = source.with_name("latin1.py")
    latin1.write_bytes(b"caf\xe9 = 1\n")
    rejected = cube("complete", f"{latin1}:1:2", *base)
    assert rejected.returncode == 2
    assert "UTF-8" in rejected.stderr
    assert scripted_backend.request_count == 1  # only the wrong-token attempt reached the backend


def test_complete_sends_the_definitions_of_imported_names(tmp_path: Path, scripted_backend: ScriptedBackend):
    """The CLI gets the editor's cross-file context that needs no open editor: imported definitions."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "pkg").mkdir()
    (project / "pkg" / "geometry.py").write_text(
        "def scale_vector(vector, factor):\n    return [x * factor for x in vector]\n"
    )
    main = project / "pkg" / "main.py"
    main.write_text(
        "from pkg.geometry import scale_vector\n\n\ndef grow(v):\n    big = scale_vector(v, 2)\n    return \n"
    )
    outside = tmp_path / "secret_notes.py"  # beside the project, not in it: never read
    outside.write_text("def scale_vector(): 'not this one'\n")
    scripted_backend.script(Reply.stream("big"))
    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(scripted_backend.settings_json()))
    done = cube("complete", f"{main}:6:12", "--settings", str(settings))
    assert done.returncode == 0, done.stderr
    prompt = scripted_backend.requests[-1].json["prompt"]
    assert "def scale_vector(vector, factor):" in prompt  # the definition, from pkg/geometry.py
    assert "Path: pkg/geometry.py" in prompt and str(tmp_path) not in prompt  # a project-relative path
    assert "not this one" not in prompt
