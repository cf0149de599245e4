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
from cube_wire.errors import CubeError

__all__ = [
    "CHAT_APPLY_COMMAND",
    "CHAT_COMMAND",
    "CHAT_DELTA",
    "CHAT_RESULT",
    "ApplyArgs",
    "ChatArgs",
    "chat_code_actions",
    "lsp_range",
    "parse_apply_args",
    "parse_chat_args",
    "workspace_edit",
]

CHAT_COMMAND = "cube.chat"
CHAT_APPLY_COMMAND = "cube.chat.apply"  # put code the user picked (a chat panel's "Apply") in a range
CHAT_RESULT = "cube/chatResult"  # prose answers, for clients that show them (else a markdown document)
CHAT_DELTA = "cube/chatDelta"  # each streamed piece, for clients that declare experimental.cubeChatStream
CONFIRM_ANNOTATION = "cube.chat"  # the change annotation that asks the editor to confirm an edit
MAX_INSTRUCTION_CHARS = 4000
MAX_APPLY_CHARS = 200_000

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


@dataclass(frozen=True)
class ApplyArgs:
    """The arguments of ``cube.chat.apply``: code to put over a range of one version of a document."""

    uri: str
    version: int
    start: tuple[int, int]
    end: tuple[int, int]
    code: str
    title: str = "Cube: Apply"


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


def _one_object(arguments: Any, command: str, shape: str) -> Mapping[str, Any]:
    """Return the single object argument of a command (pygls may hand it over as a named tuple)."""
    if hasattr(arguments, "_asdict"):
        arguments = arguments._asdict()
    if isinstance(arguments, list | tuple):
        arguments = arguments[0] if len(arguments) == 1 else None
    if hasattr(arguments, "_asdict"):
        arguments = arguments._asdict()
    if not isinstance(arguments, Mapping):
        raise CubeError(f"{command} takes one object argument: {shape}", code="chat.bad_args")
    return arguments


def _range(value: Any, command: str) -> list[int]:
    if not (isinstance(value, list) and len(value) == 4 and all(type(x) is int and x >= 0 for x in value)):
        raise CubeError(
            f"{command}: `range` must be [startLine, startChar, endLine, endChar]", code="chat.bad_args"
        )
    return value


def parse_chat_args(arguments: Any) -> ChatArgs:
    """Validate ``cube.chat``'s arguments; raise CubeError naming what is wrong."""
    arguments = _one_object(arguments, CHAT_COMMAND, "{action, uri, range, ...}")
    action, uri = arguments.get("action"), arguments.get("uri")
    if not isinstance(action, str) or not isinstance(uri, str):
        raise CubeError("cube.chat: `action` and `uri` must be strings", code="chat.bad_args")
    rng = _range(arguments.get("range"), CHAT_COMMAND)
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
    if chat_id is not None and not (isinstance(chat_id, str) and 0 < len(chat_id) <= 200):
        raise CubeError("cube.chat: `chatId` must be a string of 1..200 characters", code="chat.bad_args")
    return ChatArgs(
        action,
        uri,
        version,
        (rng[0], rng[1]),
        (rng[2], rng[3]),
        instruction,
        tuple(diagnostics[:20]),
        chat_id,
    )


def parse_apply_args(arguments: Any) -> ApplyArgs:
    """Validate ``cube.chat.apply``'s arguments; raise CubeError naming what is wrong."""
    arguments = _one_object(arguments, CHAT_APPLY_COMMAND, "{uri, version, range, code}")
    uri, version, code = arguments.get("uri"), arguments.get("version"), arguments.get("code")
    if not isinstance(uri, str) or not isinstance(code, str):
        raise CubeError("cube.chat.apply: `uri` and `code` must be strings", code="chat.bad_args")
    if type(version) is not int:
        raise CubeError(
            "cube.chat.apply: `version` must be the document version the answer was about",
            code="chat.bad_args",
        )
    if len(code) > MAX_APPLY_CHARS:
        raise CubeError(
            f"cube.chat.apply: `code` is longer than {MAX_APPLY_CHARS} characters", code="chat.bad_args"
        )
    rng = _range(arguments.get("range"), CHAT_APPLY_COMMAND)
    title = arguments.get("title")
    title = title[:100] if isinstance(title, str) and title.strip() else "Cube: Apply"
    return ApplyArgs(uri, version, (rng[0], rng[1]), (rng[2], rng[3]), code, title)


def lsp_range(document: Document, start: int, end: int, encoding: Encoding) -> list[int]:
    """Return the 4-int range form of ``cube.chat``'s arguments for str offsets into ``document``."""
    return [*document.position_at(start, encoding), *document.position_at(end, encoding)]


def workspace_edit(
    uri: str,
    version: int | None,
    document: Document,
    edit: TextEdit,
    encoding: Encoding,
    *,
    confirm: str | None = None,
) -> types.WorkspaceEdit:
    """Return the edit as a WorkspaceEdit bound to the document version it was computed for.

    With ``confirm`` (a label), the edit carries a change annotation that needs confirmation: an
    editor that supports annotations shows it for the user to apply or discard (VS Code's refactor
    preview, a diff) instead of applying it at once.
    """
    start = document.position_at(edit.start, encoding)
    end = document.position_at(edit.end, encoding)
    rng = types.Range(types.Position(*start), types.Position(*end))
    identifier = types.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    if confirm is None:
        text_edit = types.TextEdit(range=rng, new_text=edit.new_text)
        return types.WorkspaceEdit(
            document_changes=[types.TextDocumentEdit(text_document=identifier, edits=[text_edit])]
        )
    annotated = types.AnnotatedTextEdit(range=rng, new_text=edit.new_text, annotation_id=CONFIRM_ANNOTATION)
    annotation = types.ChangeAnnotation(
        label=confirm, needs_confirmation=True, description="Suggested by the chat model: review it"
    )
    return types.WorkspaceEdit(
        document_changes=[types.TextDocumentEdit(text_document=identifier, edits=[annotated])],
        change_annotations={CONFIRM_ANNOTATION: annotation},
    )


def _describe(diagnostic: types.Diagnostic) -> str:
    severity = {1: "error", 2: "warning", 3: "information", 4: "hint"}.get(
        int(diagnostic.severity or 1), "error"
    )
    source = f" ({diagnostic.source})" if diagnostic.source else ""
    return f"line {diagnostic.range.start.line + 1}: {severity}{source}: {diagnostic.message}"[:500]
