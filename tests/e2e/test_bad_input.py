"""End-to-end: hostile or broken input gets an error or an empty result, and the server stays up."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json

import psutil
import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import Session
from tests.support.scripted_backend import Reply, ScriptedBackend

pytestmark = pytest.mark.e2e

URI = "file:///work/demo/main.py"
SOURCE = "def add(a, b):\n    return \n"


def write_raw(client: LanguageClient, body: bytes) -> None:
    """Write one framed message straight to the server's stdin, bypassing the client's encoder."""
    server = client._server  # the subprocess pytest-lsp started
    assert server is not None and server.stdin is not None
    server.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def raw_request(client: LanguageClient, msg_id: int, method: str, params: object) -> object:
    """Send a request whose params the client's own encoder would refuse; return the response future."""
    future: concurrent.futures.Future[object] = concurrent.futures.Future()
    client.protocol._request_futures[msg_id] = future  # so the client routes the response to us
    message = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    write_raw(client, json.dumps(message).encode())
    return await asyncio.wait_for(asyncio.wrap_future(future), 10)


async def still_answers(session: Session, backend: ScriptedBackend) -> None:
    backend.script(Reply.stream("a + b"))
    session.open("file:///work/demo/alive.py", SOURCE)
    result = await session.inline("file:///work/demo/alive.py", 1, 11)
    assert [item.insert_text for item in result.items] == ["a + b"]


async def test_malformed_params_get_invalid_params_error(start_server, backend: ScriptedBackend):
    client = await start_server(backend.settings_json())
    with pytest.raises(Exception, match=r"-32602|Invalid"):
        await raw_request(client, 7001, types.TEXT_DOCUMENT_INLINE_COMPLETION, {"bogus": 1})
    bad_position = {
        "textDocument": {"uri": URI},
        "position": {"line": -5, "character": "x"},
        "context": {"triggerKind": 1},
    }
    with pytest.raises(Exception, match=r"-32602|Invalid"):
        await raw_request(client, 7002, types.TEXT_DOCUMENT_INLINE_COMPLETION, bad_position)
    write_raw(client, b"{this is not json")
    await still_answers(Session(client), backend)


async def test_invalid_utf8_message_is_dropped_and_server_survives(start_server, backend: ScriptedBackend):
    client = await start_server(backend.settings_json())
    session = Session(client)
    body = (
        b'{"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": '
        b'{"uri": "file:///work/demo/latin1.py", "languageId": "python", "version": 1, '
        b'"text": "caf\xe9 = 1\\n"}}}'
    )
    write_raw(client, body)
    result = await session.inline("file:///work/demo/latin1.py", 0, 3)
    assert not result.items  # the document never opened: empty result, no crash
    await still_answers(session, backend)


async def test_huge_binary_and_out_of_range_documents(start_server, backend: ScriptedBackend):
    client = await start_server(backend.settings_json())
    session = Session(client)
    process = psutil.Process(client._server.pid)
    huge = ("x = 1  # padding padding padding padding\n" * 500_000)[: 20 * 2**20]
    session.open("file:///work/demo/huge.py", huge)
    assert not (await session.inline("file:///work/demo/huge.py", 10, 0)).items
    session.insert("file:///work/demo/huge.py", 3, 0, "y")  # edits of a dropped text are ignored
    assert not (await session.inline("file:///work/demo/huge.py", 3, 1)).items
    session.open("file:///work/demo/blob.bin", "\x00\x01\x02ELF\x00binary", language="plaintext")
    assert not (await session.inline("file:///work/demo/blob.bin", 0, 3)).items
    session.open(URI, SOURCE)
    assert not (await session.inline(URI, 500, 0)).items  # line past the end
    assert not (await session.inline("file:///never/opened.py", 0, 0)).items
    assert backend.request_count == 0  # none of these reached the model
    # The 20 MB text was not kept: the server holds far less than the document's size.
    assert process.memory_info().rss < 200 * 2**20
    await still_answers(session, backend)


async def test_thousand_concurrent_requests(start_server, backend: ScriptedBackend):
    backend.script(Reply.stream("a + b"))
    client = await start_server(backend.settings_json())
    session = Session(client)
    session.open(URI, SOURCE)
    process = psutil.Process(client._server.pid)
    before = process.memory_info().rss
    results = await asyncio.wait_for(
        asyncio.gather(*(session.inline(URI, 1, 11, automatic=bool(i % 2)) for i in range(1000))), 60
    )
    answered = [r for r in results if r.items]
    assert answered and all(r.items[0].insert_text == "a + b" for r in answered)
    assert backend.request_count <= 2  # shared generation and cache, not 1,000 streams
    assert process.memory_info().rss - before < 50 * 2**20
    await still_answers(session, backend)


async def test_settings_file_json_errors_do_not_kill_the_server(start_server, backend: ScriptedBackend):
    client = await start_server({"completion": ["not", "an", "object"], "endpoint": 42})
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1 and "completion" in errors[0] and "endpoint" in errors[0]
    client.protocol.notify(
        types.WORKSPACE_DID_CHANGE_CONFIGURATION,
        types.DidChangeConfigurationParams(settings={"cube": backend.settings_json()}),
    )
    await client.wait_for_notification("cube/status")
    await still_answers(Session(client), backend)


def test_log_file_never_contains_tokens_or_code(tmp_path, backend: ScriptedBackend):
    """Run a whole session with DEBUG logging to a file, then search the file for secrets and code."""

    async def session_with_log() -> str:
        from pytest_lsp import ClientServerConfig

        from tests.e2e.conftest import INLINE_CAPABILITIES, SERVER_COMMAND

        log_file = tmp_path / "cube-lsp.log"
        command = [*SERVER_COMMAND[:3], "--log-level", "DEBUG", "--log-file", str(log_file)]
        client = await ClientServerConfig(server_command=command).start()
        backend.script(Reply.stream("secret_completion_text"))
        status = asyncio.ensure_future(client.wait_for_notification("cube/status"))
        await client.initialize_session(
            types.InitializeParams(
                capabilities=INLINE_CAPABILITIES, initialization_options=backend.settings_json()
            )
        )
        await status
        session = Session(client)
        session.open(URI, "SECRET_SOURCE_MARKER = 1\n" + SOURCE)
        await session.inline(URI, 2, 11)
        with contextlib.suppress(Exception):
            bad = {"x": "SECRET_PARAM_MARKER"}
            await raw_request(client, 9001, types.TEXT_DOCUMENT_INLINE_COMPLETION, bad)
        await client.shutdown_session()
        await client.stop()
        return log_file.read_text()

    text = asyncio.run(session_with_log())
    assert text, "the log file should not be empty at DEBUG"
    for secret in (backend.token, "SECRET_SOURCE_MARKER", "secret_completion_text", "SECRET_PARAM_MARKER"):
        assert secret not in text


async def test_the_same_invalid_settings_pushed_again_are_reported_once(
    start_server, backend: ScriptedBackend
):
    """An editor pushes settings on every change to any of them: one message per set of errors."""
    client = await start_server(backend.settings_json())
    session = Session(client)
    invalid = {**backend.settings_json(), "completion": {"debounceMs": "fast"}}
    for _ in range(3):
        client.protocol.notify(
            types.WORKSPACE_DID_CHANGE_CONFIGURATION,
            types.DidChangeConfigurationParams(settings={"cube": invalid}),
        )
    await still_answers(session, backend)  # a round trip: every push before it has been handled
    errors = [m.message for m in client.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1 and "completion.debounceMs" in errors[0], errors
