"""Chat code actions through the real cube-lsp process (pytest-lsp); the SCRIPTED BACKEND is the model.

Listing code actions never calls the model; running one streams the answer, then the server asks the
client to apply the smallest edit (workspace/applyEdit), or applies nothing and says why.
"""

from __future__ import annotations

import asyncio
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.uris import to_fs_path
from pytest_lsp import ClientServerConfig, LanguageClient

from tests.support.scripted_backend import Reply, ScriptedBackend

SERVER_COMMAND = [sys.executable, "-m", "cube_lsp", "--log-level", "WARNING"]
URI = "file:///work/geometry.py"
SOURCE = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n\n\nprint(area(2))\n"
SELECTION = types.Range(types.Position(3, 0), types.Position(5, 0))  # the whole function
DOCUMENTED = 'def area(r):\n    """Return the area of a circle of radius r."""\n    return math.pi * r * r\n'
CAPABILITIES = types.ClientCapabilities(
    text_document=types.TextDocumentClientCapabilities(
        code_action=types.CodeActionClientCapabilities(
            resolve_support=types.ClientCodeActionResolveOptions(properties=["command", "edit"])
        )
    ),
    window=types.WindowClientCapabilities(work_done_progress=True),
    workspace=types.WorkspaceClientCapabilities(apply_edit=True),
    experimental={"cubeChatResult": True},
)

Start = Callable[..., Awaitable[LanguageClient]]


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Start]:
    clients: list[LanguageClient] = []

    async def start(
        settings: dict[str, Any], capabilities: types.ClientCapabilities = CAPABILITIES
    ) -> LanguageClient:
        client = await ClientServerConfig(server_command=SERVER_COMMAND).start()
        clients.append(client)
        client.applied = []  # type: ignore[attr-defined]
        client.results = []  # type: ignore[attr-defined]
        client.deltas = []  # type: ignore[attr-defined]
        client.accepts = True  # type: ignore[attr-defined]  # False: the user discards what is shown

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
            if not client.accepts:  # type: ignore[attr-defined]
                return types.ApplyWorkspaceEditResult(applied=False)
            client.applied.append(params.edit)  # type: ignore[attr-defined]
            return types.ApplyWorkspaceEditResult(applied=True)

        @client.feature("cube/chatResult")
        def chat_result(params: Any) -> None:
            client.results.append(params)  # type: ignore[attr-defined]

        @client.feature("cube/chatDelta")
        def chat_delta(params: Any) -> None:
            client.deltas.append(plain(params))  # type: ignore[attr-defined]

        await client.initialize_session(
            types.InitializeParams(capabilities=capabilities, initialization_options=settings)
        )
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(URI, "python", 1, SOURCE))
        )
        return client

    yield start
    for client in clients:
        if client.error is None:
            await asyncio.wait_for(client.shutdown_session(), 20)
        await client.stop()


def chat_settings(backend: ScriptedBackend, **extra: Any) -> dict[str, Any]:
    return backend.settings_json(models={"completion": "m", "chat": "chat-model"}, **extra)


async def list_actions(
    client: LanguageClient, diagnostics: list[types.Diagnostic] | None = None
) -> list[Any]:
    params = types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(URI),
        range=SELECTION,
        context=types.CodeActionContext(diagnostics=diagnostics or []),
    )
    return list(await client.text_document_code_action_async(params) or [])


async def run(client: LanguageClient, action: str, **extra: Any) -> Any:
    listed = {a.data["action"]: a for a in await list_actions(client) if isinstance(a, types.CodeAction)}
    chosen = listed.get(action) or listed["document"]
    resolved = await client.code_action_resolve_async(chosen)
    arguments = dict(resolved.command.arguments[0]) | {"action": action} | extra
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=resolved.command.command, arguments=[arguments])
    )
    return plain(result)


def plain(value: Any) -> Any:
    """A result or notification as plain dicts and lists (pygls gives named tuples for objects)."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def edited(client: LanguageClient) -> str:
    """The document after the one edit the server asked the client to apply."""
    (edit,) = client.applied  # type: ignore[attr-defined]
    (change,) = edit.document_changes
    (text_edit,) = change.edits
    lines = SOURCE.split("\n")
    offset = lambda p: sum(len(line) + 1 for line in lines[: p.line]) + p.character  # noqa: E731
    return (
        SOURCE[: offset(text_edit.range.start)] + text_edit.new_text + SOURCE[offset(text_edit.range.end) :]
    )


async def test_listing_actions_calls_no_model_and_fix_needs_diagnostics(
    start: Start, backend: ScriptedBackend
):
    client = await start(chat_settings(backend))
    titles = [a.title for a in await list_actions(client)]
    assert "Cube: Add documentation" in titles and "Cube: Explain" in titles
    assert not any(t.startswith("Cube: Fix") for t in titles)
    problem = types.Diagnostic(
        range=SELECTION, message="undefined name 'pi'", severity=types.DiagnosticSeverity.Error
    )
    with_fix = await list_actions(client, [problem])
    assert (
        with_fix[0].title == "Cube: Fix 'undefined name 'pi''"
        and with_fix[0].kind == types.CodeActionKind.QuickFix
    )
    assert all(a.command is None and a.edit is None for a in with_fix)  # resolved lazily
    assert backend.request_count == 0


async def test_add_documentation_applies_the_smallest_edit(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("Here it is:\n\n```python\n", DOCUMENTED, "```\n\nI added a docstring."))
    client = await start(chat_settings(backend))
    result = await run(client, "document")
    assert result["applied"] is True
    assert edited(client) == SOURCE.replace(
        "def area(r):\n", 'def area(r):\n    """Return the area of a circle of radius r."""\n'
    )
    (change,) = client.applied[0].document_changes  # type: ignore[attr-defined]
    assert change.text_document.version == 1  # bound to the version the model answered about
    sent = backend.requests[-1].json
    assert sent["model"] == "chat-model" and "def area(r):" in sent["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I would add a docstring saying what it returns.", "no code"),
        ("", "empty"),
        ("```python\ndef area(r):\n    return math.pi * r * r\n", "cut off"),  # truncated block
        (
            "```python\nimport numpy\n\n\ndef area(r):\n    return numpy.pi * r * r\n\n\nprint(area(3))\n```",
            "outside",
        ),
    ],
)
async def test_bad_answers_apply_nothing_and_say_why(
    start: Start, backend: ScriptedBackend, answer: str, reason: str
):
    backend.script(Reply.stream(answer) if answer else Reply.stream())
    client = await start(chat_settings(backend))
    result = await run(client, "document")
    assert result["applied"] is False and reason in result["reason"].lower(), result["reason"]
    assert client.applied == []  # type: ignore[attr-defined]
    warnings = [m.message for m in client.messages if m.type == types.MessageType.Warning]
    assert any("nothing applied" in w for w in warnings), warnings


async def test_two_code_blocks_apply_the_python_one(start: Start, backend: ScriptedBackend):
    answer = "Run it with:\n```bash\npython geometry.py\n```\nThe code:\n```python\n" + DOCUMENTED + "```\n"
    backend.script(Reply.stream(answer))
    client = await start(chat_settings(backend))
    assert (await run(client, "document"))["applied"] is True
    assert '"""Return the area of a circle of radius r."""' in edited(client)


async def test_explain_sends_markdown_and_edits_nothing(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("`area` returns ", "the area of a circle."))
    client = await start(chat_settings(backend))
    result = await run(client, "explain")
    assert result["answer"] == "`area` returns the area of a circle."
    (shown,) = [plain(r) for r in client.results]  # type: ignore[attr-defined]
    assert shown["markdown"] == result["answer"] and shown["action"] == "explain"
    assert client.applied == []  # type: ignore[attr-defined]
    assert client.progress_reports  # $/progress while streaming


async def test_a_document_changed_during_the_answer_is_not_edited(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("```python\n", DOCUMENTED, "```", hold_before=(1,)))
    client = await start(chat_settings(backend))
    running = asyncio.ensure_future(run(client, "document"))
    await backend.wait_for_request_async(1)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            [
                types.TextDocumentContentChangePartial(
                    range=types.Range(types.Position(0, 0), types.Position(0, 0)), text="# x\n"
                )
            ],
        )
    )
    await list_actions(client)  # a round trip: the server has applied the change before this answers
    backend.release()
    result = await asyncio.wait_for(running, 20)
    assert result["applied"] is False and "changed" in result["reason"]
    assert client.applied == []  # type: ignore[attr-defined]


async def test_cancelling_stops_the_backend_stream(start: Start, backend: ScriptedBackend):
    backend.script(Reply.hang_after("```python\n"))
    client = await start(chat_settings(backend))
    running = asyncio.ensure_future(run(client, "document"))
    begun = await asyncio.wait_for(client.wait_for_notification("$/progress"), 20)  # the chat's begin
    token = begun.token
    assert client.progress_reports[token][0].cancellable is True
    await backend.wait_for_request_async(1)
    client.protocol.notify(
        types.WINDOW_WORK_DONE_PROGRESS_CANCEL, types.WorkDoneProgressCancelParams(token=token)
    )
    await asyncio.wait_for(backend.wait_for_disconnect_async(1), 20)
    result = await asyncio.wait_for(running, 20)
    assert result == {"applied": False, "reason": "cancelled"}
    assert client.applied == []  # type: ignore[attr-defined]


async def test_attestation_failure_sends_nothing(start: Start, backend: ScriptedBackend):
    client = await start(chat_settings(backend, attestation={"mode": "required"}))
    with pytest.raises(Exception, match="attestation"):
        await run(client, "document")
    assert backend.request_count == 0


async def test_wrong_arguments_are_refused_clearly(start: Start, backend: ScriptedBackend):
    client = await start(chat_settings(backend))
    for arguments in (
        [],
        [{"action": "document"}],
        [{"action": "document", "uri": URI, "range": [0, 0, "x", 1]}],
        [1, 2],
    ):
        with pytest.raises(Exception, match=r"cube\.chat"):
            await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="cube.chat", arguments=arguments)
            )
    stale = {"action": "document", "uri": URI, "range": [3, 0, 5, 0], "version": 99}
    with pytest.raises(Exception, match="changed since"):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="cube.chat", arguments=[stale])
        )
    assert backend.request_count == 0


async def test_a_client_without_resolve_gets_the_command_with_the_action(
    start: Start, backend: ScriptedBackend
):
    """Neovim 0.7 and eglot do not resolve code actions: the listed action carries its command."""
    plain_client = types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(apply_edit=True))
    client = await start(chat_settings(backend), capabilities=plain_client)
    listed = await list_actions(client)
    commands = [getattr(item, "command", None) for item in listed]
    assert commands and all(c is not None for c in commands)
    assert backend.request_count == 0


STREAMING = types.ClientCapabilities(
    text_document=CAPABILITIES.text_document,
    window=CAPABILITIES.window,
    workspace=types.WorkspaceClientCapabilities(
        apply_edit=True,
        workspace_edit=types.WorkspaceEditClientCapabilities(
            document_changes=True,
            change_annotation_support=types.ChangeAnnotationsSupportOptions(groups_on_label=True),
        ),
    ),
    experimental={"cubeChatResult": True, "cubeChatStream": True},
)


async def execute(client: LanguageClient, command: str, arguments: dict[str, Any]) -> Any:
    return plain(
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command, arguments=[arguments])
        )
    )


async def test_a_streaming_client_gets_each_piece_then_the_result_with_its_range(
    start: Start, backend: ScriptedBackend
):
    backend.script(Reply.stream("`area` ", "returns the area ", "of a circle."))
    client = await start(chat_settings(backend), capabilities=STREAMING)
    result = await run(client, "explain")
    deltas = client.deltas  # type: ignore[attr-defined]
    assert "".join(d["text"] for d in deltas) == "`area` returns the area of a circle."
    (shown,) = [plain(r) for r in client.results]  # type: ignore[attr-defined]
    # One id from the first piece on, made by the server when the client gave none.
    assert {d["chatId"] for d in deltas} == {shown["chatId"]} == {result["chatId"]}
    assert {(d["action"], d["title"], d["uri"]) for d in deltas} == {("explain", "Cube: Explain", URI)}
    # What the answer is about: whole lines of the selection, in the version it saw.
    assert shown["version"] == 1 and shown["range"] == [3, 0, 5, 0]


async def test_a_client_without_streaming_gets_no_pieces(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("It ", "adds."))
    client = await start(chat_settings(backend))
    await run(client, "explain")
    assert client.deltas == [] and len(client.results) == 1  # type: ignore[attr-defined]


async def test_a_follow_up_keeps_the_thread(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("It computes an area."), Reply.stream("Use `math.tau / 2`."))
    client = await start(chat_settings(backend), capabilities=STREAMING)
    first = await run(client, "explain")
    second = await run(client, "ask", chatId=first["chatId"], instruction="how else could pi be written?")
    assert second["chatId"] == first["chatId"]
    messages = backend.requests[-1].json["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "user"], roles
    assert messages[2]["content"] == "It computes an area."
    # The code is in the thread already: the follow-up sends only the question.
    assert messages[3]["content"] == "Question: how else could pi be written?"
    # A new thread starts empty.
    backend.script(Reply.stream("Fresh."))
    await run(client, "explain")
    assert [m["role"] for m in backend.requests[-1].json["messages"]] == ["system", "user"]


async def test_edits_ask_for_confirmation_when_the_client_can_show_them(
    start: Start, backend: ScriptedBackend
):
    backend.script(Reply.stream("```python\n", DOCUMENTED, "```"))
    client = await start(chat_settings(backend), capabilities=STREAMING)
    assert (await run(client, "document"))["applied"] is True
    (edit,) = client.applied  # type: ignore[attr-defined]
    (text_edit,) = edit.document_changes[0].edits
    assert isinstance(text_edit, types.AnnotatedTextEdit)
    annotation = edit.change_annotations[text_edit.annotation_id]
    assert annotation.needs_confirmation is True and annotation.label == "Cube: Add documentation"
    assert edited(client) == SOURCE.replace(
        "def area(r):\n", 'def area(r):\n    """Return the area of a circle of radius r."""\n'
    )


async def test_confirm_edits_off_applies_plain_edits(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("```python\n", DOCUMENTED, "```"))
    client = await start(chat_settings(backend, chat={"confirmEdits": False}), capabilities=STREAMING)
    assert (await run(client, "document"))["applied"] is True
    (edit,) = client.applied  # type: ignore[attr-defined]
    assert not edit.change_annotations
    assert not isinstance(edit.document_changes[0].edits[0], types.AnnotatedTextEdit)


async def test_a_discarded_edit_is_the_users_choice_not_a_warning(start: Start, backend: ScriptedBackend):
    backend.script(Reply.stream("```python\n", DOCUMENTED, "```"))
    client = await start(chat_settings(backend), capabilities=STREAMING)
    client.accepts = False  # type: ignore[attr-defined]
    result = await run(client, "document")
    assert result["applied"] is False and result["reason"] == "discarded"
    assert not [m for m in client.messages if m.type == types.MessageType.Warning]


async def test_apply_puts_picked_code_over_the_range_of_its_version(start: Start, backend: ScriptedBackend):
    client = await start(chat_settings(backend), capabilities=STREAMING)
    code = '    def area(r):\n        """Area of a circle."""\n        return math.pi * r * r'
    arguments = {"uri": URI, "version": 1, "range": [3, 0, 5, 0], "code": code}
    result = await execute(client, "cube.chat.apply", arguments)
    assert result == {"applied": True}
    # Re-indented to the target; only the new line is inserted.
    assert edited(client) == SOURCE.replace("def area(r):\n", 'def area(r):\n    """Area of a circle."""\n')
    (text_edit,) = client.applied[0].document_changes[0].edits  # type: ignore[attr-defined]
    assert text_edit.range.start.line == text_edit.range.end.line == 4
    assert backend.request_count == 0  # applying asks no model


async def test_apply_refuses_a_stale_version_and_code_that_rewrites_outside(
    start: Start, backend: ScriptedBackend
):
    client = await start(chat_settings(backend), capabilities=STREAMING)
    stale = await execute(
        client, "cube.chat.apply", {"uri": URI, "version": 7, "range": [3, 0, 5, 0], "code": "x = 1"}
    )
    assert stale["applied"] is False and "changed" in stale["reason"]
    whole = "import math\n\n\ndef area(r):\n    return 3.14 * r * r\n\n\nprint(area(2))\n"
    outside = await execute(
        client, "cube.chat.apply", {"uri": URI, "version": 1, "range": [3, 0, 5, 0], "code": whole}
    )
    assert outside["applied"] is False and "outside" in outside["reason"]
    assert client.applied == []  # type: ignore[attr-defined]
    for bad in ({"uri": URI, "range": [3, 0, 5, 0], "code": "x"}, {"uri": URI, "version": 1, "code": "x"}):
        with pytest.raises(Exception, match=r"cube\.chat\.apply"):
            await execute(client, "cube.chat.apply", bad)


async def test_a_client_without_chat_results_gets_a_private_markdown_page(
    start: Start, backend: ScriptedBackend
):
    """Neovim and others: the prose answer opens as a markdown file only this user can read."""
    backend.script(Reply.stream("`area` returns ", "the area of a circle."))
    shows = types.ClientCapabilities(
        text_document=CAPABILITIES.text_document,
        window=types.WindowClientCapabilities(
            work_done_progress=True, show_document=types.ShowDocumentClientCapabilities(support=True)
        ),
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
    )
    client = await start(chat_settings(backend), capabilities=shows)
    await run(client, "explain")
    (shown,) = client.shown_documents
    name, text, mode = take_page(shown.uri)
    assert name.startswith("cube-explain-") and name.endswith(".md")
    assert text == "# Cube: Explain\n\n`area` returns the area of a circle.\n"
    assert mode == 0o600
    assert shown.take_focus is False


def take_page(uri: str) -> tuple[str, str, int]:
    """Read and remove a page the server wrote: (name, text, permission bits)."""
    page = Path(to_fs_path(uri) or "")
    try:
        return page.name, page.read_text(), stat.S_IMODE(page.stat().st_mode)
    finally:
        page.unlink(missing_ok=True)


async def test_refactor_sends_the_instruction_and_applies_the_rewrite(start: Start, backend: ScriptedBackend):
    tau = "def area(r):\n    return math.tau / 2 * r * r\n"
    backend.script(Reply.stream("```python\n", tau, "```"))
    client = await start(chat_settings(backend))
    result = await run(client, "refactor", instruction="write pi as tau / 2")
    assert result["applied"] is True
    assert edited(client) == SOURCE.replace("math.pi * r * r", "math.tau / 2 * r * r")
    prompt = backend.requests[-1].json["messages"][-1]["content"]
    assert prompt.endswith("Refactor it: write pi as tau / 2")


async def test_fix_puts_the_diagnostic_in_the_prompt_and_applies_the_fix(
    start: Start, backend: ScriptedBackend
):
    backend.script(Reply.stream("```python\ndef area(r):\n    return math.pi * r ** 2\n```"))
    client = await start(chat_settings(backend))
    problem = types.Diagnostic(
        range=SELECTION, message="use ** for powers", severity=types.DiagnosticSeverity.Warning, source="lint"
    )
    (fix,) = [a for a in await list_actions(client, [problem]) if a.data["action"] == "fix"]
    resolved = await client.code_action_resolve_async(fix)
    result = await execute(client, "cube.chat", resolved.command.arguments[0])
    assert result["applied"] is True
    assert edited(client) == SOURCE.replace("math.pi * r * r", "math.pi * r ** 2")
    prompt = backend.requests[-1].json["messages"][-1]["content"]
    assert "line 4: warning (lint): use ** for powers" in prompt


@pytest.mark.parametrize(("action", "instruction"), [("tests", ""), ("ask", "why r * r?")])
async def test_prose_actions_answer_in_markdown_and_edit_nothing(
    start: Start, backend: ScriptedBackend, action: str, instruction: str
):
    answer = "```python\ndef test_area():\n    assert area(1) == math.pi\n```"
    backend.script(Reply.stream(answer))
    client = await start(chat_settings(backend))
    result = await run(client, action, instruction=instruction)
    assert result["applied"] is False and result["answer"] == answer
    (shown,) = [plain(r) for r in client.results]  # type: ignore[attr-defined]
    assert shown["action"] == action and shown["markdown"] == answer
    assert client.applied == []  # type: ignore[attr-defined]
    if instruction:
        assert backend.requests[-1].json["messages"][-1]["content"].endswith(f"Question: {instruction}")


async def test_a_ten_thousand_line_selection_is_cut_with_a_notice_and_not_applied(
    start: Start, backend: ScriptedBackend
):
    uri = "file:///work/huge.py"
    text = "".join(f"value_{i} = compute({i})\n" for i in range(10_000))
    backend.script(Reply.stream("```python\nvalue_0 = compute(0)  # documented\n```"))
    client = await start(chat_settings(backend))
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
    )
    arguments = {"action": "document", "uri": uri, "version": 1, "range": [0, 0, 10_000, 0]}
    result = await execute(client, "cube.chat", arguments)
    assert result["applied"] is False and "too long" in result["reason"]
    prompt = backend.requests[-1].json["messages"][-1]["content"]
    assert "only its beginning is shown" in prompt and "value_9999" not in prompt
    assert len(prompt) < 20_000  # within the budget, not the 250 kB selection
    assert client.applied == []  # type: ignore[attr-defined]


async def test_a_binary_document_is_refused_before_anything_is_sent(start: Start, backend: ScriptedBackend):
    uri = "file:///work/blob.py"
    client = await start(chat_settings(backend))
    item = types.TextDocumentItem(uri, "python", 1, "\x00\x01ELF\x00binary\n")
    client.text_document_did_open(types.DidOpenTextDocumentParams(item))
    with pytest.raises(Exception, match="binary or too large"):
        await execute(
            client, "cube.chat", {"action": "explain", "uri": uri, "version": 1, "range": [0, 0, 1, 0]}
        )
    assert backend.request_count == 0
