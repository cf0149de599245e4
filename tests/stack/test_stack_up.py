"""`cube-stack up` end to end: the embedded stack, then `cube complete` through it (real llama.cpp)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cube_stack.cli import build_parser
from cube_stack.cli import main as cube_stack_main
from cube_stack.stack import EmbeddedStack, StackOptions
from tests.support.stack_process import cube_stack_up

pytestmark = pytest.mark.slow


def cube_complete(settings: Path, location: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cube_lsp.cli", "complete", "--settings", str(settings), location],
        capture_output=True,
        text=True,
        timeout=120,
    )


def options(data_dir: Path) -> StackOptions:
    return StackOptions(data_dir=data_dir, port=0, auth_port=0, ollama_url=None, argon2_fast=True)


async def test_up_then_cube_complete_produces_a_completion(tmp_path: Path):
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n")
    data_dir = tmp_path / "stack"
    async with EmbeddedStack(options(data_dir)) as running:
        client = json.loads(running.paths["client"].read_text())
        assert client["endpoint"].startswith("https://127.0.0.1:")
        assert client["attestation"]["mode"] == "simulated"
        assert client["models"]["completion"] == "cube-demo:random"
        assert stat.S_IMODE(os.stat(running.paths["client"]).st_mode) == 0o600  # it holds the token
        policy = json.loads(running.paths["policy"].read_text())
        assert "simulated" in policy["root_of_trust"]
        done = await _in_thread(cube_complete, running.paths["client"], f"{source}:2:12")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()  # random weights, but a real completion through every part
        assert "[proxy." not in done.stderr and "[attestation." not in done.stderr
        first = (running.domain_id, running.token, policy["root_of_trust"])

    async with EmbeddedStack(options(data_dir)) as again:  # a restart reuses user, domain, token, root
        policy = json.loads(again.paths["policy"].read_text())
        assert (again.domain_id, again.token, policy["root_of_trust"]) == first


async def _in_thread(function, *args):
    import asyncio

    return await asyncio.to_thread(function, *args)


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "D", "up"],
        ["up", "--data-dir", "D"],
        ["--data-dir", "elsewhere", "up", "--data-dir", "D"],  # the command's own wins
        ["domain", "list", "--data-dir", "D"],
        ["token", "revoke", "pat-id", "--data-dir", "D"],
    ],
)
def test_data_dir_goes_before_or_after_the_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).data_dir == Path("D")


def test_without_data_dir_the_default_is_left_to_the_stack() -> None:
    assert build_parser().parse_args(["up"]).data_dir is None


def test_admin_commands_work_on_the_stack_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    import asyncio

    async def bootstrap() -> str:
        async with EmbeddedStack(options(tmp_path)) as running:
            return running.domain_id

    domain_id = asyncio.run(bootstrap())
    base = ["--data-dir", str(tmp_path)]
    assert cube_stack_main([*base, "domain", "list"]) == 0
    assert domain_id in capsys.readouterr().out
    assert (
        cube_stack_main([*base, "token", "create", "--domain", domain_id, "--operation", "completions"]) == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("pat_")
    assert cube_stack_main([*base, "token", "revoke", created["id"]]) == 0
    capsys.readouterr()
    assert cube_stack_main([*base, "token", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(p["id"] == created["id"] and p["revoked"] for p in listed["pats"])
    assert (
        cube_stack_main(
            [*base, "user", "create", "ada", "--email", "ada@example.com", "--password", "s3cret-pass"]
        )
        == 0
    )
    assert cube_stack_main(["--data-dir", str(tmp_path / "empty"), "domain", "list"]) != 0


def test_cube_stack_up_command_serves_completions_and_stops_on_ctrl_c(tmp_path: Path):
    """The README's first command, then `cube complete`, then Ctrl-C: a clean exit."""

    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n")
    data_dir = tmp_path / "data"
    with cube_stack_up(data_dir) as running:
        assert "RANDOM WEIGHTS" in running.banner and "SIMULATED" in running.banner
        done = cube_complete(data_dir / "client.json", f"{source}:2:12")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()
        assert "[proxy." not in done.stderr and "[attestation." not in done.stderr
    # leaving the block sent Ctrl-C and checked the exit status 0
