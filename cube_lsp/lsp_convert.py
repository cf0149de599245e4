"""Conversions from engine results to lsprotocol types (the ``lsp_*`` helpers the handlers use)."""

from __future__ import annotations

from lsprotocol import types

from cube_lsp.completion.engine import CompletionResult
from cube_lsp.documents import Document, Encoding

ACCEPT_COMMAND = "cube.acceptCompletion"
AI_DETAIL = "Cube AI"


def lsp_range(document: Document, start: int, end: int, encoding: Encoding) -> types.Range:
    """Return the LSP range between two offsets of ``document``."""
    start_line, start_char = document.position_at(start, encoding)
    if end == start:
        return types.Range(types.Position(start_line, start_char), types.Position(start_line, start_char))
    end_line, end_char = document.position_at(end, encoding)
    return types.Range(types.Position(start_line, start_char), types.Position(end_line, end_char))


def lsp_accept_command(result: CompletionResult) -> types.Command:
    """Return the command the editor runs when the completion is accepted (local tracking only)."""
    return types.Command(title="Accept Cube completion", command=ACCEPT_COMMAND, arguments=[result.id])


def lsp_inline_completion_list(
    result: CompletionResult | None, document: Document, offset: int, encoding: Encoding
) -> types.InlineCompletionList:
    """Return the inline completion list for a result (empty when there is none)."""
    if result is None:
        return types.InlineCompletionList(items=[])
    item = types.InlineCompletionItem(
        insert_text=result.text,
        range=lsp_range(document, offset, offset + result.replace_suffix_chars, encoding),
        command=lsp_accept_command(result),
    )
    return types.InlineCompletionList(items=[item])


def lsp_completion_list(
    result: CompletionResult | None, document: Document, offset: int, encoding: Encoding
) -> types.CompletionList:
    """Return a completion list for clients without inline completion (one AI-marked item)."""
    if result is None:
        return types.CompletionList(is_incomplete=True, items=[])
    word_start = _word_start(document.text, offset)
    typed = document.text[word_start:offset]
    first_line = (typed + result.text).split("\n", 1)[0].strip() or result.text.strip()
    edit_range = lsp_range(document, word_start, offset + result.replace_suffix_chars, encoding)
    item = types.CompletionItem(
        label=first_line[:80] or "…",
        kind=types.CompletionItemKind.Snippet,
        detail=AI_DETAIL,
        label_details=types.CompletionItemLabelDetails(description=AI_DETAIL),
        documentation=result.text,  # a plain string: every client accepts it
        filter_text=typed + result.text.split("\n", 1)[0],
        sort_text="\x00",
        text_edit=types.TextEdit(range=edit_range, new_text=typed + result.text),
        insert_text_format=types.InsertTextFormat.PlainText,
        command=lsp_accept_command(result),
    )
    # Incomplete: the client must ask again as the programmer types, since the AI item depends on it.
    return types.CompletionList(is_incomplete=True, items=[item])


def _word_start(text: str, offset: int) -> int:
    start = offset
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] == "_"):
        start -= 1
    return start
