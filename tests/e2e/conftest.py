"""Drive the real `cube-lsp` process (python -m cube_lsp over stdio) with a pytest-lsp client."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.support.scripted_backend import ScriptedBackend

SERVER_COMMAND = [sys.executable, "-m", "cube_lsp", "--log-level", "WARNING"]

INLINE_CAPABILITIES = types.ClientCapabilities(
    general=types.GeneralClientCapabilities(position_encodings=[types.PositionEncodingKind.Utf16]),
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        completion=types.CompletionClientCapabilities(),
        synchronization=types.TextDocumentSyncClientCapabilities(),
    ),
    workspace=types.WorkspaceClientCapabilities(configuration=True),
)

# A client without inline completion (older editors): it gets the textDocument/completion fallback.
COMPLETION_ONLY_CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(completion=types.CompletionClientCapabilities()),
)

StartServer = Callable[..., Awaitable[LanguageClient]]


class Session:
    """Helpers over a started client: open documents, edit them, request completions."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.versions: dict[str, int] = {}

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, language, 1, text))
        )

    def insert(self, uri: str, line: int, character: int, text: str) -> None:
        self.versions[uri] += 1
        position = types.Position(line, character)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                [types.TextDocumentContentChangePartial(range=types.Range(position, position), text=text)],
            )
        )

    def inline_params(
        self, uri: str, line: int, character: int, automatic: bool = False
    ) -> types.InlineCompletionParams:
        kind = (
            types.InlineCompletionTriggerKind.Automatic
            if automatic
            else types.InlineCompletionTriggerKind.Invoked
        )
        return types.InlineCompletionParams(
            context=types.InlineCompletionContext(trigger_kind=kind),
            text_document=types.TextDocumentIdentifier(uri),
            position=types.Position(line, character),
        )

    async def inline(self, uri: str, line: int, character: int, automatic: bool = False) -> Any:
        return await self.client.text_document_inline_completion_async(
            self.inline_params(uri, line, character, automatic)
        )


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Return a function that starts cube-lsp with given settings and capabilities; stops them all after."""
    clients: list[LanguageClient] = []

    async def start(
        settings: dict[str, Any] | None,
        capabilities: types.ClientCapabilities = INLINE_CAPABILITIES,
        workspace_settings: dict[str, Any] | None = None,
        wait_for_status: bool = True,
    ) -> LanguageClient:
        config = ClientServerConfig(server_command=SERVER_COMMAND)
        client = await config.start()
        clients.append(client)
        if workspace_settings is not None:
            client.set_configuration(workspace_settings, section="cube")
        status = asyncio.ensure_future(client.wait_for_notification("cube/status"))
        result = await client.initialize_session(
            types.InitializeParams(capabilities=capabilities, initialization_options=settings)
        )
        client.initialize_result = result  # type: ignore[attr-defined]
        if wait_for_status:
            # The server sends cube/status once settings are applied (after `initialized`).
            await asyncio.wait_for(status, 10)
        else:
            status.cancel()
        return client

    yield start
    for client in clients:
        if client.error is None:
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()


@pytest.fixture
def backend(scripted_backend: ScriptedBackend) -> ScriptedBackend:
    """The scripted backend, as the model behind the proxy."""
    return scripted_backend
