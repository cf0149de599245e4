"""Chat code actions in LSP shapes: the actions offered, the command's arguments, the edit to apply.

Listing actions calls no model: each action carries only ``data`` (what to do, on which document
version and range); ``codeAction/resolve`` adds the ``cube.chat`` command; running that command asks
the model. Pure, so the rules are tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lsprotocol import types

from cube_lsp.chat.edits import TextEdit
from cube_lsp.documents import Document, Encoding
from cube_lsp.errors import CubeError

__all__ = [
    "CHAT_COMMAND",
    "CHAT_RESULT",
    "ChatArgs",
    "chat_code_actions",
    "parse_chat_args",
    "workspace_edit",
]

CHAT_COMMAND = "cube.chat"
CHAT_RESULT = "cube/chatResult"  # prose answers, for clients that show them (else a markdown document)
MAX_INSTRUCTION_CHARS = 4000

_OFFERED: list[tuple[str, str, str]] = [
    # (action, title, kind)
    ("explain", "Cube: Explain", "refactor.cube.explain"),
    ("document", "Cube: Add documentation", types.CodeActionKind.RefactorRewrite.value),
    ("refactor", "Cube: Refactor...", types.CodeActionKind.RefactorRewrite.value),
    ("tests", "Cube: Write tests", "refactor.cube.tests"),
    ("ask", "Cube: Ask...", "refactor.cube.ask"),
]


@dataclass(frozen=True)
class ChatArgs:
    """The arguments of ``cube.chat``: an action on a range of one version of a document."""

    action: str
    uri: str
    version: int | None
    start: tuple[int, int]  # (line, character) in the negotiated position encoding
    end: tuple[int, int]
    instruction: str = ""
    diagnostics: tuple[str, ...] = ()
    chat_id: str | None = None


def chat_code_actions(
    uri: str, selection: types.Range, version: int | None, diagnostics: Sequence[types.Diagnostic]
) -> list[types.CodeAction]:
    """Return the chat actions for a selection (no model call): Fix only when there are diagnostics."""
    base = {
        "uri": uri,
        "version": version,
        "range": [
            selection.start.line,
            selection.start.character,
            selection.end.line,
            selection.end.character,
        ],
    }
    actions = [
        types.CodeAction(title=title, kind=kind, data={**base, "action": action})
        for action, title, kind in _OFFERED
    ]
    if diagnostics:
        described = [_describe(d) for d in diagnostics[:10]]
        first = diagnostics[0].message.split("\n", 1)[0][:80]
        fix = types.CodeAction(
            title=f"Cube: Fix '{first}'",
            kind=types.CodeActionKind.QuickFix,
            diagnostics=list(diagnostics),
            data={**base, "action": "fix", "diagnostics": described},
        )
        actions.insert(0, fix)
    return actions


def resolve_command(action: types.CodeAction) -> types.CodeAction:
    """Attach the ``cube.chat`` command to an action listed by :func:`chat_code_actions`."""
    data = action.data if isinstance(action.data, Mapping) else None
    if data is None:
        return action
    action.command = types.Command(title=action.title, command=CHAT_COMMAND, arguments=[dict(data)])
    return action


def parse_chat_args(arguments: Any) -> ChatArgs:
    """Validate ``cube.chat``'s arguments; raise CubeError naming what is wrong."""
    if hasattr(arguments, "_asdict"):
        arguments = arguments._asdict()
    if isinstance(arguments, list | tuple):
        arguments = arguments[0] if len(arguments) == 1 else None
    if hasattr(arguments, "_asdict"):
        arguments = arguments._asdict()
    if not isinstance(arguments, Mapping):
        raise CubeError(
            "cube.chat takes one object argument: {action, uri, range, ...}", code="chat.bad_args"
        )
    action, uri, rng = arguments.get("action"), arguments.get("uri"), arguments.get("range")
    if not isinstance(action, str) or not isinstance(uri, str):
        raise CubeError("cube.chat: `action` and `uri` must be strings", code="chat.bad_args")
    if not (isinstance(rng, list) and len(rng) == 4 and all(type(x) is int and x >= 0 for x in rng)):
        raise CubeError(
            "cube.chat: `range` must be [startLine, startChar, endLine, endChar]", code="chat.bad_args"
        )
    version = arguments.get("version")
    if version is not None and type(version) is not int:
        raise CubeError("cube.chat: `version` must be an integer", code="chat.bad_args")
    instruction = arguments.get("instruction", "")
    if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_CHARS:
        raise CubeError(
            f"cube.chat: `instruction` must be a string of at most {MAX_INSTRUCTION_CHARS} characters",
            code="chat.bad_args",
        )
    diagnostics = arguments.get("diagnostics") or []
    if not isinstance(diagnostics, list) or not all(isinstance(d, str) for d in diagnostics):
        raise CubeError("cube.chat: `diagnostics` must be a list of strings", code="chat.bad_args")
    chat_id = arguments.get("chatId")
    return ChatArgs(
        action,
        uri,
        version,
        (rng[0], rng[1]),
        (rng[2], rng[3]),
        instruction,
        tuple(diagnostics[:20]),
        chat_id if isinstance(chat_id, str) else None,
    )


def workspace_edit(
    uri: str, version: int | None, document: Document, edit: TextEdit, encoding: Encoding
) -> types.WorkspaceEdit:
    """Return the edit as a WorkspaceEdit bound to the document version it was computed for."""
    start = document.position_at(edit.start, encoding)
    end = document.position_at(edit.end, encoding)
    text_edit = types.TextEdit(
        range=types.Range(types.Position(*start), types.Position(*end)), new_text=edit.new_text
    )
    identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(text_document=identifier, edits=[text_edit])]
    )


def _describe(diagnostic: types.Diagnostic) -> str:
    severity = {1: "error", 2: "warning", 3: "information", 4: "hint"}.get(
        int(diagnostic.severity or 1), "error"
    )
    source = f" ({diagnostic.source})" if diagnostic.source else ""
    return f"line {diagnostic.range.start.line + 1}: {severity}{source}: {diagnostic.message}"[:500]
