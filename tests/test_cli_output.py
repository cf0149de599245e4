"""`cube` as a new user meets it: options before the subcommand, result and log lines apart, SIMULATED once.

The option-order tests run against the SCRIPTED BACKEND; the output tests against a real `cube-stack up`
(simulated attestation, the built-in runtime's demo model), with stdout and stderr merged into one pipe,
as a terminal shows them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.scripted_backend import Reply, ScriptedBackend
from tests.support.stack_process import StackProcess, cube_stack_up

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


# ------------------------------------------------------------------------------------ output


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with cube_stack_up(tmp_path_factory.mktemp("cli-stack")) as running:
        yield running


def client_json(stack: StackProcess) -> Path:
    return stack.data_dir / "client.json"


def split_lines(output: str) -> tuple[list[str], list[str]]:
    """Split merged output into (result lines, `cube:` lines); no line may hold both."""
    assert output == "" or output.endswith("\n"), repr(output)
    lines = output.splitlines()
    logs = [line for line in lines if line.startswith("cube: ")]
    results = [line for line in lines if not line.startswith("cube: ")]
    assert not any("cube: " in line for line in results), output  # a log line ran into the result
    return results, logs


@pytest.mark.slow
def test_complete_keeps_the_completion_and_its_warning_on_separate_lines(stack: StackProcess, source: Path):
    done = cube("complete", "--settings", str(client_json(stack)), f"{source}:2:12", merged=True)
    assert done.returncode in (0, 1), done.stdout  # the demo model has random weights: maybe nothing
    results, logs = split_lines(done.stdout)
    assert bool(results) == (done.returncode == 0)
    assert not any("SIMULATED" in line or "attestation" in line for line in results), done.stdout
    assert logs[0].startswith("cube: WARNING: SIMULATED attestation (dev mode, NOT a confidential VM)")
    assert all(line.startswith(("cube: WARNING: ", "cube: no completion")) for line in logs), logs


@pytest.mark.slow
def test_complete_says_simulated_once(stack: StackProcess, source: Path):
    done = cube("--settings", str(client_json(stack)), "complete", f"{source}:2:12")
    assert done.returncode in (0, 1), done.stderr
    assert done.stderr.count("SIMULATED") == 1, done.stderr


@pytest.mark.slow
def test_attest_endpoint_says_simulated_once_and_keeps_lines_apart(stack: StackProcess):
    settings = json.loads(client_json(stack).read_text())
    policy, domain = settings["attestation"]["policy"], settings["domain"]
    alone = cube("--domain", domain, "--policy", policy, "attest", "endpoint", settings["endpoint"])
    assert alone.returncode == 0, alone.stderr
    verdict = alone.stdout.splitlines()[0]
    assert verdict.startswith("SIMULATED (dev mode, NOT a confidential VM): Milan, measurement ")
    assert verdict.count("SIMULATED") == 1
    assert alone.stderr == ""  # the verdict is the attestation result: no log line repeats it
    merged = cube(
        "attest", "endpoint", settings["endpoint"], "--domain", domain, "--policy", policy, merged=True
    )
    results, logs = split_lines(merged.stdout)

    def same_run(lines: list[str]) -> list[str]:  # when it was verified differs between two runs
        return [line for line in lines if not line.startswith("verified_at ")]

    assert same_run(results) == same_run(alone.stdout.splitlines())
    assert logs == []
    assert merged.stdout.count("SIMULATED") == 1
