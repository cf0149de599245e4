"""`cube search` as a subprocess against the SCRIPTED BACKEND (the embedder) on 127.0.0.1.

Includes the indexer killed for real (SIGKILL) in the middle of embedding: the next run resumes and
answers, and embeds only what the killed run had not stored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cube_lsp.search.engine import SearchOptions
from tests.support.scripted_backend import Reply, ScriptedBackend

FUNCTION = '''
def {name}(value):
    """Return {what} of the value, for the {topic} module."""
    result = value * {n} + len("{topic}")
    return result
'''
TOPICS = ["billing", "invoices", "tokens", "sessions", "payments", "accounts", "reports", "exports"]


def cube(*args: str, cache: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "cube_lsp.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        **kwargs,
    )


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for i, topic in enumerate(TOPICS):
        folder = root / topic
        folder.mkdir(parents=True)
        for j in range(12):
            body = "".join(
                FUNCTION.format(
                    name=f"{topic}_step_{j}_{k}", what=f"the {k}th measure", topic=topic, n=i * j + k
                )
                for k in range(4)
            )
            (folder / f"step_{j}.py").write_text(body)
    (root / "auth.py").write_text(
        'def refresh_access_token(session):\n    """Ask the auth service for a fresh access token."""\n'
        "    return session.post('/users/tokens/refresh')\n"
    )
    return root


@pytest.fixture
def settings(tmp_path: Path, scripted_backend: ScriptedBackend) -> Path:
    path = tmp_path / "settings.json"
    raw = scripted_backend.settings_json(models={"completion": "m", "embedding": "embedder"})
    path.write_text(json.dumps(raw))
    return path


def embed_inputs(backend: ScriptedBackend) -> list[str]:
    return [t for r in backend.requests if r.route == "embed" and r.json for t in r.json["input"]]


def test_search_prints_ranked_lines_and_batch_json(
    workspace: Path, settings: Path, tmp_path: Path, scripted_backend: ScriptedBackend
):
    cache = tmp_path / "cache"
    done = cube(
        "search", "fresh access token", "--root", str(workspace), "--settings", str(settings), cache=cache
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    path_line, symbol, score = first.split("  ")
    assert (path_line, symbol) == ("auth.py:1", "refresh_access_token") and float(score) > 0
    assert not list(workspace.rglob("*.sqlite3")), "the index must never be written into the workspace"

    queries = tmp_path / "queries.txt"
    queries.write_text("fresh access token\nthe 2th measure of the value for the payments module\n\n")
    embedded_before = len(embed_inputs(scripted_backend))
    done = cube(
        "--settings",
        str(settings),
        "search",
        "--root",
        str(workspace),
        "--batch",
        str(queries),
        "--json",
        "--limit",
        "3",
        cache=cache,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 3 and lines[2] == []  # one line per query, in order; an empty query finds nothing
    assert lines[0][0] == {**lines[0][0], "path": "auth.py", "start_line": 1, "end_line": 3}
    assert set(lines[0][0]) == {"path", "start_line", "end_line", "symbol", "score"}
    assert lines[1][0]["path"].startswith("payments/")
    # The second run re-embedded nothing of the unchanged workspace: only its queries and the probe.
    assert len(embed_inputs(scripted_backend)) - embedded_before == 3


def test_search_refuses_bad_arguments(workspace: Path, settings: Path, tmp_path: Path):
    cache = tmp_path / "cache"
    for args in (
        ["search", "--root", str(workspace), "--settings", str(settings)],  # no query
        ["search", "q", "--batch", "x", "--json", "--root", str(workspace), "--settings", str(settings)],
        ["search", "q", "--limit", "0", "--root", str(workspace), "--settings", str(settings)],
        ["search", "q", "--root", str(tmp_path / "missing"), "--settings", str(settings)],
    ):
        done = cube(*args, cache=cache)
        assert done.returncode == 2 and done.stderr.startswith("cube: "), (args, done.stderr)


def test_killed_indexer_resumes_with_a_usable_index(
    workspace: Path, settings: Path, tmp_path: Path, scripted_backend: ScriptedBackend
):
    cache = tmp_path / "cache"
    # The 6th embedding request never gets an answer: the indexer is mid-run when it is killed.
    stall = Reply.hang_before_headers()
    scripted_backend.rule = lambda r: stall if r.route == "embed" and r.index >= 6 else None
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    command = [sys.executable, "-m", "cube_lsp.cli", "search", "fresh access token", "--root", str(workspace)]
    process = subprocess.Popen([*command, "--settings", str(settings)], env=env, stderr=subprocess.PIPE)
    try:
        scripted_backend.wait_for_request(6, timeout=60)
        process.send_signal(signal.SIGKILL)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()  # type: ignore[union-attr]
    stored = embed_inputs(scripted_backend)[1:]  # minus the width probe
    scripted_backend.rule = None
    scripted_backend.reset()

    done = cube(
        "search", "fresh access token", "--root", str(workspace), "--settings", str(settings), cache=cache
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("auth.py:1  refresh_access_token")
    resumed = embed_inputs(scripted_backend)
    chunks = 8 * 12 * 4 + 1
    # Resumed, not restarted: the batches the killed run had stored were not embedded again.
    answered = stored[: 4 * SearchOptions().embed_batch]  # requests 2..5 were answered
    assert not set(answered) & set(resumed[1:-1]), "stored embeddings were sent again"
    assert len(resumed) - 2 == chunks - len(answered)  # every other chunk, plus the probe and the query
