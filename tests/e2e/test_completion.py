"""End-to-end: the real cube-lsp process against the SCRIPTED BACKEND on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json

import pytest
from lsprotocol import types

from tests.e2e.conftest import COMPLETION_ONLY_CAPABILITIES, Session
from tests.support.scripted_backend import Reply, ScriptedBackend

pytestmark = pytest.mark.e2e

URI = "file:///work/demo/calc.py"
SOURCE = "def add(a, b):\n    return \n\n\nprint(add(1, 2))\n"
LINE, COL = 1, len("    return ")


async def test_initialize_advertises_inline_completion_and_utf16(start_server, backend: ScriptedBackend):
    client = await start_server(backend.settings_json())
    result = client.initialize_result
    assert result.capabilities.inline_completion_provider is not None
    assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf16
    assert result.capabilities.completion_provider is None  # inline-capable client: no fallback


async def test_inline_completion_streams_from_ollama_backend(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a ", "+ b"))
    client = await start_server(backend.settings_json(models={"completion": "qwen2.5-coder:1.5b"}))
    session = Session(client)
    session.open(URI, SOURCE)
    result = await session.inline(URI, LINE, COL)
    assert [item.insert_text for item in result.items] == ["a + b"]
    item = result.items[0]
    assert item.range == types.Range(types.Position(LINE, COL), types.Position(LINE, COL))
    assert item.command.command == "cube.acceptCompletion"
    request = backend.requests[-1]
    assert request.path == f"/{backend.domain}/api/generate"
    assert request.bearer == backend.token
    assert request.json["model"] == "qwen2.5-coder:1.5b"
    assert request.json["prompt"].endswith("def add(a, b):\n    return ")
    assert request.json["suffix"].startswith("\n\n\nprint(add(1, 2))")
    assert request.json["stream"] is True


async def test_inline_completion_over_openai_api(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a", " + b"))
    client = await start_server(backend.settings_json(api="openai"))
    session = Session(client)
    session.open(URI, SOURCE)
    result = await session.inline(URI, LINE, COL)
    assert [item.insert_text for item in result.items] == ["a + b"]
    assert backend.requests[-1].path == f"/{backend.domain}/v1/completions"


async def test_completion_fallback_for_clients_without_inline_support(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json(), capabilities=COMPLETION_ONLY_CAPABILITIES)
    session = Session(client)
    session.open(URI, SOURCE)
    result = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(URI), types.Position(LINE, COL))
    )
    assert len(result.items) == 1
    item = result.items[0]
    assert item.text_edit.new_text == "a + b"
    assert item.detail == "Cube AI"
    assert item.command.command == "cube.acceptCompletion"


async def test_cancel_request_stops_the_backend_stream(start_server, backend: ScriptedBackend):
    backend.script(Reply.hang_after("a + "))
    client = await start_server(backend.settings_json())
    session = Session(client)
    session.open(URI, SOURCE)
    future = client.protocol.send_request(
        types.TEXT_DOCUMENT_INLINE_COMPLETION, session.inline_params(URI, LINE, COL), msg_id="cancel-me"
    )
    await backend.wait_for_request_async(1)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    await backend.wait_for_disconnect_async(1)  # the server closed the HTTP stream
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wrap_future(future)


async def test_rapid_edits_make_one_backend_call(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json(completion={"debounceMs": 150}))
    session = Session(client)
    session.open(URI, "def add(a, b):\n    \n")
    pending = []
    for index, char in enumerate("return "):
        session.insert(URI, 1, 4 + index, char)
        pending.append(session.inline(URI, 1, 5 + index, automatic=True))
    results = await asyncio.gather(*pending)
    assert backend.request_count == 1
    assert [item.insert_text for item in results[-1].items] == ["a + b"]
    assert all(not result.items for result in results[:-1])


async def test_cache_hit_and_typed_ahead_make_no_backend_call(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json())
    session = Session(client)
    session.open(URI, SOURCE)
    first = await session.inline(URI, LINE, COL)
    assert first.items[0].insert_text == "a + b"
    again = await session.inline(URI, LINE, COL)
    assert again.items[0].insert_text == "a + b"
    session.insert(URI, LINE, COL, "a +")
    typed_ahead = await session.inline(URI, LINE, COL + 3, automatic=True)
    assert typed_ahead.items[0].insert_text == " b"
    assert backend.request_count == 1


async def test_backend_error_is_shown_once_not_per_keystroke(start_server, backend: ScriptedBackend):
    backend.rule = lambda request: (
        Reply.failure(500, "model crashed") if request.route == "generate" else None
    )
    client = await start_server(backend.settings_json())
    session = Session(client)
    session.open(URI, SOURCE)
    for index in range(3):
        session.insert(URI, LINE, COL + index, "x")
        result = await session.inline(URI, LINE, COL + index + 1)
        assert not result.items
    errors = [m for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1
    assert "model crashed" in errors[0].message
    assert backend.request_count == 3


async def test_unauthorized_token_gives_one_clear_message(start_server, backend: ScriptedBackend):
    client = await start_server(backend.settings_json(token="wrong-token"))
    session = Session(client)
    session.open(URI, SOURCE)
    assert (await session.inline(URI, LINE, COL)).items == ()
    assert (await session.inline(URI, LINE, COL)).items == ()
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1
    assert "token" in errors[0].lower()
    assert "wrong-token" not in errors[0]


async def test_bad_settings_are_named_and_defaults_apply(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    settings = backend.settings_json(completion={"maxPromptTokens": "lots", "multiline": "sometimes"})
    client = await start_server(settings)
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1
    assert "completion.maxPromptTokens" in errors[0]
    assert "completion.multiline" in errors[0]
    session = Session(client)
    session.open(URI, SOURCE)
    assert (await session.inline(URI, LINE, COL)).items[0].insert_text == "a + b"


async def test_workspace_configuration_overrides_initialization_options(
    start_server, backend: ScriptedBackend
):
    backend.script(Reply.stream("a + b"))
    client = await start_server(
        {"endpoint": "http://127.0.0.1:9", "domain": "nowhere"},
        workspace_settings=backend.settings_json(models={"completion": "starcoder2:3b"}),
    )
    session = Session(client)
    session.open(URI, SOURCE)
    assert (await session.inline(URI, LINE, COL)).items[0].insert_text == "a + b"
    assert backend.requests[-1].json["model"] == "starcoder2:3b"


async def test_status_notification_and_acceptance_tracking(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json())
    session = Session(client)
    session.open(URI, SOURCE)
    item = (await session.inline(URI, LINE, COL)).items[0]
    client.protocol.notify(
        "cube/didShowCompletion", {"item": {"command": {"arguments": item.command.arguments}}}
    )
    await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=item.command.command, arguments=item.command.arguments)
    )
    stats = await client.protocol.send_request_async("cube/acceptanceStats", {})
    assert stats.python.shown == 1
    assert stats.python.accepted == 1


async def test_utf8_position_encoding_is_negotiated_and_used(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("1"))
    capabilities = types.ClientCapabilities(
        general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf8, types.PositionEncodingKind.Utf16]
        ),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities()
        ),
    )
    client = await start_server(backend.settings_json(), capabilities=capabilities)
    assert client.initialize_result.capabilities.position_encoding == types.PositionEncodingKind.Utf8
    session = Session(client)
    text = "név = '😀' + \n"
    session.open(URI, text)
    column = len(text[: text.index("+ ") + 2].encode("utf-8"))  # UTF-8 bytes, not characters
    result = await session.inline(URI, 0, column)
    assert [item.insert_text for item in result.items] == ["1"]
    assert result.items[0].range.start.character == column
    assert backend.requests[-1].json["prompt"].endswith("'😀' + ")


async def test_settings_file_flag_is_the_base_layer(start_server, backend: ScriptedBackend, tmp_path):
    from pytest_lsp import ClientServerConfig

    from tests.e2e.conftest import INLINE_CAPABILITIES, SERVER_COMMAND

    settings = tmp_path / "client.json"
    settings.write_text(json.dumps(backend.settings_json(models={"completion": "codellama:7b-code"})))
    client = await ClientServerConfig(server_command=[*SERVER_COMMAND, "--settings", str(settings)]).start()
    try:
        status = asyncio.ensure_future(client.wait_for_notification("cube/status"))
        await client.initialize_session(types.InitializeParams(capabilities=INLINE_CAPABILITIES))
        await asyncio.wait_for(status, 10)
        backend.script(Reply.stream("a + b"))
        session = Session(client)
        session.open(URI, SOURCE)
        assert (await session.inline(URI, LINE, COL)).items[0].insert_text == "a + b"
        assert backend.requests[-1].json["model"] == "codellama:7b-code"
    finally:
        await client.shutdown_session()
        await client.stop()


@pytest.mark.parametrize("editor", ["visual_studio_code", "neovim@v0.11.0", "neovim@v0.6.1", "emacs"])
async def test_real_editor_capabilities_get_a_completion(start_server, backend: ScriptedBackend, editor: str):
    """Replay real editors' capabilities (none declares inline completion): the fallback must work."""
    from pytest_lsp import client_capabilities

    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json(), capabilities=client_capabilities(editor))
    assert client.initialize_result.capabilities.completion_provider is not None
    session = Session(client)
    session.open(URI, SOURCE)
    result = await client.text_document_completion_async(
        types.CompletionParams(types.TextDocumentIdentifier(URI), types.Position(LINE, COL))
    )
    assert [item.text_edit.new_text for item in result.items] == ["a + b"]
