"""Semantic search through the real cube-lsp process (pytest-lsp), with the SCRIPTED BACKEND as embedder.

The scripted backend embeds with hashed word counts (deterministic, not a model) and records every
request, so these tests assert what reached the embedding route and what never did. The index lives in
a temporary XDG cache directory, never in the workspace.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.support.scripted_backend import ScriptedBackend

SERVER_COMMAND = [sys.executable, "-m", "cube_lsp", "--log-level", "WARNING"]
CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
    ),
    workspace=types.WorkspaceClientCapabilities(
        configuration=True,
        symbol=types.WorkspaceSymbolClientCapabilities(),
        did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(dynamic_registration=True),
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
)

AUTH = '''"""Sessions of the auth service."""


class SessionManager:
    """Keeps the user's tokens."""

    def __init__(self, client):
        self.client = client

    def refresh_access_token(self, force=False):
        """Ask the auth service for a new access token before the old one expires."""
        reply = self.client.post("/users/tokens/refresh")
        return reply["access_token"]


def parse_arguments(argv):
    """Split the command line into options and files."""
    return [a for a in argv if a.startswith("-")], [a for a in argv if not a.startswith("-")]
'''
MATHS = '''def add_vectors(a, b):
    """Add two vectors element by element."""
    return [x + y for x, y in zip(a, b)]
'''
SCALE = '''

def scale_vector(v, k):
    """Multiply every element by k."""
    return [x * k for x in v]
'''
SECRET = "API_KEY=sk-live-never-embed-this"
# Not a key: the shape of one, which the secrets deny list must keep from the embedder.
PEM = "-----BEGIN " + "PRIVATE KEY-----\nnot-a-real-key-only-its-shape\n-----END " + "PRIVATE KEY-----\n"

Start = Callable[..., Awaitable[LanguageClient]]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "auth.py").write_text(AUTH)
    (root / "maths.py").write_text(MATHS)
    (root / ".env").write_text(SECRET)
    (root / "deploy").mkdir()
    (root / "deploy" / "server.pem").write_text(PEM)
    (root / ".gitignore").write_text("build/\n")
    (root / "build").mkdir()
    (root / "build" / "generated.py").write_text("def generated_refresh_token():\n    pass\n")
    return root


@pytest_asyncio.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    clients: list[LanguageClient] = []

    async def start(root: Path, settings: dict[str, Any]) -> LanguageClient:
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        client = await ClientServerConfig(server_command=SERVER_COMMAND, server_env=env).start()
        clients.append(client)
        client.registrations = []  # type: ignore[attr-defined]
        client.statuses, client.looked_at = [], 0  # type: ignore[attr-defined]
        client.status_arrived = asyncio.Event()  # type: ignore[attr-defined]

        @client.feature("cube/status")
        def status(params: Any) -> None:
            client.statuses.append(params)  # type: ignore[attr-defined]
            client.status_arrived.set()  # type: ignore[attr-defined]

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(params: types.RegistrationParams) -> None:
            client.registrations.extend(params.registrations)  # type: ignore[attr-defined]

        await client.initialize_session(
            types.InitializeParams(
                capabilities=CAPABILITIES, root_uri=root.as_uri(), initialization_options=settings
            )
        )
        return client

    yield start
    for client in clients:
        if client.error is None:
            await asyncio.wait_for(client.shutdown_session(), 20)
        await client.stop()


def search_settings(backend: ScriptedBackend, **extra: Any) -> dict[str, Any]:
    return backend.settings_json(models={"completion": "m", "embedding": "embedder"}, **extra)


async def index_ready(
    client: LanguageClient, until: Callable[[dict[str, Any]], bool] = lambda index: True, within_s: float = 30
) -> dict[str, Any]:
    """Wait for an index state that is ready (or failed) in a cube/status not looked at yet; return it.

    Statuses are collected as they arrive (see ``start``), so one sent before this call is not missed.
    """
    seen: list[Any] = client.statuses  # type: ignore[attr-defined]
    async with asyncio.timeout(within_s):
        while True:
            while client.looked_at < len(seen):  # type: ignore[attr-defined]
                status = as_dict(seen[client.looked_at])  # type: ignore[attr-defined]
                client.looked_at += 1  # type: ignore[attr-defined]
                index = status.get("index")
                if index and index.get("state") in ("ready", "error") and until(index):
                    return index
            client.status_arrived.clear()  # type: ignore[attr-defined]
            await client.status_arrived.wait()  # type: ignore[attr-defined]


def embedded_texts(backend: ScriptedBackend) -> list[str]:
    return [text for r in backend.requests if r.route == "embed" for text in r.json["input"]]


async def search(client: LanguageClient, query: str, **params: Any) -> Any:
    return await client.protocol.send_request_async("cube/search", {"query": query, **params})


def as_dict(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: as_dict(v) for k, v in value._asdict().items()}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    return value


async def test_search_symbols_progress_and_ignore_rules(
    start: Start, workspace: Path, backend: ScriptedBackend
):
    client = await start(workspace, search_settings(backend))
    index = await index_ready(client)
    assert index["state"] == "ready" and index["files"] == 2, index  # pkg/auth.py and maths.py
    assert index["skipped"].get("secret") == 2, index  # .env and server.pem

    result = as_dict(await search(client, "ask the auth service for a new access token"))
    top = result["items"][0]
    assert (top["path"], top["symbol"]) == ("pkg/auth.py", "SessionManager.refresh_access_token"), result
    assert top["uri"] == (workspace / "pkg" / "auth.py").as_uri()
    assert top["startLine"] == 10 and "def refresh_access_token" in top["snippet"]

    filtered = as_dict(await search(client, "add", pathGlob="pkg/**"))
    assert all(item["path"].startswith("pkg/") for item in filtered["items"]), filtered

    symbols = await client.workspace_symbol_async(types.WorkspaceSymbolParams(query="parse arguments"))
    assert any(s.name == "parse_arguments" and s.location.uri.endswith("pkg/auth.py") for s in symbols)

    # Nothing secret, git-ignored or outside the workspace was ever sent to the embedding route.
    texts = "\n".join(embedded_texts(backend))
    assert "sk-live-never-embed-this" not in texts and "PRIVATE KEY" not in texts
    assert "generated_refresh_token" not in texts
    assert "refresh_access_token" in texts
    # $/progress: begin, reports, end, for the first indexing.
    reports = next(iter(client.progress_reports.values()))
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and isinstance(
        reports[-1], types.WorkDoneProgressEnd
    )
    # The server asked to be told of file changes.
    assert any(r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES for r in client.registrations)


async def test_save_reindexes_only_that_file(start: Start, workspace: Path, backend: ScriptedBackend):
    client = await start(workspace, search_settings(backend))
    first = await index_ready(client)
    before = len(embedded_texts(backend))
    maths = workspace / "maths.py"
    maths.write_text(MATHS + SCALE)
    client.text_document_did_save(
        types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(maths.as_uri()))
    )
    await index_ready(client, until=lambda index: index["chunks"] > first["chunks"])
    new = embedded_texts(backend)[before:]
    assert new and all("maths.py" in text for text in new), new  # only the saved file's changed chunks
    assert not any("add_vectors" in text and "scale_vector" not in text for text in new)  # unchanged: kept
    result = as_dict(await search(client, "multiply every element"))
    assert result["items"][0]["symbol"] == "scale_vector"

    (workspace / "pkg" / "auth.py").unlink()
    client.workspace_did_change_watched_files(
        types.DidChangeWatchedFilesParams(
            [types.FileEvent((workspace / "pkg" / "auth.py").as_uri(), types.FileChangeType.Deleted)]
        )
    )
    await index_ready(client, until=lambda index: index["files"] < first["files"])
    result = as_dict(await search(client, "refresh access token"))
    assert all(item["path"] != "pkg/auth.py" for item in result["items"]), result


async def test_attestation_failure_refuses_search_and_sends_nothing(
    start: Start, workspace: Path, backend: ScriptedBackend, tmp_path: Path
):
    # Required attestation with no policy file: the attestor refuses before any request is made.
    settings = search_settings(backend, attestation={"mode": "required"})
    client = await start(workspace, settings)
    index = await index_ready(client)
    assert index["state"] == "error" and index["code"].startswith("attestation."), index
    with pytest.raises(Exception) as caught:
        await search(client, "refresh the access token")
    assert "attestation" in str(caught.value).lower()
    assert backend.requests == []  # not the width probe, not a chunk, not the query


async def test_bad_queries_get_clear_answers(start: Start, workspace: Path, backend: ScriptedBackend):
    client = await start(workspace, search_settings(backend))
    await index_ready(client)
    huge = "token " * 16_000  # 96 KB: cut before embedding, still answered
    assert as_dict(await search(client, huge))["items"]
    assert as_dict(await search(client, "   "))["items"] == []
    for bad in ({"query": 42}, {"query": "x", "limit": 0}, {"query": "x", "languages": "python"}):
        with pytest.raises(Exception, match="cube/search"):
            await client.protocol.send_request_async("cube/search", bad)
    # The server still answers after every refusal.
    assert as_dict(await search(client, "add two vectors"))["items"][0]["symbol"] == "add_vectors"


async def test_a_large_workspace_is_indexed_by_worker_processes(
    start: Start, tmp_path: Path, backend: ScriptedBackend
):
    """Over one commit batch of files, chunking runs in spawned worker processes of `python -m cube_lsp`."""
    root = tmp_path / "large"
    root.mkdir()
    for i in range(450):
        (root / f"module_{i:03}.py").write_text(f"def compute_{i}(value):\n    return value * {i} + 1\n")
    client = await start(root, search_settings(backend))
    index = await index_ready(client, within_s=60)
    assert (index["state"], index["files"]) == ("ready", 450), index
    result = as_dict(await search(client, "compute_321"))
    assert result["items"][0]["symbol"] == "compute_321"


async def test_chat_prompts_get_the_chunks_search_finds_related(
    start: Start, workspace: Path, backend: ScriptedBackend
):
    from tests.support.scripted_backend import Reply

    settings = backend.settings_json(models={"completion": "m", "embedding": "embedder", "chat": "chatter"})
    client = await start(workspace, settings)
    await index_ready(client)
    uri = (workspace / "renew.py").as_uri()
    source = (
        "def renew(session):\n"
        "    # get a new access token from the auth service\n"
        "    return session.refresh_access_token(force=True)\n"
    )
    item = types.TextDocumentItem(uri, "python", 1, source)
    client.text_document_did_open(types.DidOpenTextDocumentParams(item))
    backend.script(Reply.stream("It renews the token."))
    arguments = {"action": "explain", "uri": uri, "version": 1, "range": [0, 0, 3, 0]}
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command="cube.chat", arguments=[arguments])
    )
    (chat,) = [r for r in backend.requests if r.route == "chat"]
    prompt = chat.json["messages"][-1]["content"]
    # The related method, whole, with where it lives; the unrelated function is not there.
    assert "Related code from pkg/auth.py:10-13:" in prompt, prompt
    assert 'reply = self.client.post("/users/tokens/refresh")' in prompt
    assert "def add_vectors" not in prompt
    # Finding it embedded the selection through the same (attested) client, before the chat request.
    embeds = [i for i, r in enumerate(backend.requests) if r.route == "embed"]
    assert any("refresh_access_token(force=True)" in t for t in backend.requests[embeds[-1]].json["input"])
    assert embeds[-1] < backend.requests.index(chat)
