"""Chat prompts for code actions: a system prompt per action, and the code around the selection.

Pure: the document, the selection (str offsets), the user's instruction and diagnostics, and the
cross-file snippets (from :mod:`cube_lsp.context`) go in; chat messages come out, within a token
budget. What the model gets, in order of priority when the budget is short: the selection (cut with a
notice if it alone is too long), the enclosing function or class (tree-sitter), the file's imports,
the diagnostics, then the related snippets, best first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cube_lsp.completion.budget import CharRatioCounter, TokenCounter, cut_to_tokens
from cube_lsp.completion.definitions import import_section
from cube_lsp.completion.types import Snippet
from cube_lsp.languages import language_info, parse

__all__ = ["ACTIONS", "ChatInput", "ChatPrompt", "build_chat_prompt", "enclosing_definition"]

Action = Literal["explain", "document", "refactor", "tests", "fix", "ask"]

_ANSWER_CODE = (
    "Answer with the complete replacement for the selected code in one fenced code block tagged with "
    "its language, then nothing else. Keep the code's indentation and style, and change nothing "
    "outside what the request needs."
)
#: The system prompt of each action. Actions that change code ask for exactly one code block, which
#: cube_lsp.chat.edits turns into the smallest edit of the selection.
ACTIONS: dict[str, str] = {
    "explain": "You explain code to a programmer: what it does, how, and anything surprising. Be concise; "
    "use markdown; quote code only when it helps.",
    "document": "You add documentation to code: docstrings or doc comments in the language's usual "
    "style, and comments only where the why is not obvious. Do not change the code itself. " + _ANSWER_CODE,
    "refactor": "You refactor code as the programmer asks, keeping its behaviour. " + _ANSWER_CODE,
    "tests": "You write unit tests for the selected code, in the project's test style and framework "
    "when the context shows one. Answer with the tests in one fenced code block.",
    "fix": "You fix the problem the diagnostics describe in the selected code, with the smallest "
    "change that fixes it. " + _ANSWER_CODE,
    "ask": "You answer the programmer's question about their code. Be concise; use markdown.",
}
#: Share of the budget for what goes around the selection (enclosing code, imports, snippets).
_CONTEXT_SHARE = 0.4
_COUNTER = CharRatioCounter()


@dataclass(frozen=True)
class ChatInput:
    """What a chat prompt is built from."""

    action: str
    path: str
    language_id: str
    text: str  # the whole document
    start: int  # the selection, str offsets into text
    end: int
    instruction: str = ""  # refactor: what to do; ask: the question
    diagnostics: Sequence[str] = ()  # "line 12: error: name 'x' is not defined"
    snippets: Sequence[Snippet] = ()  # cross-file context, best first


@dataclass(frozen=True)
class ChatPrompt:
    """Chat messages for the model, and whether the selection had to be cut to fit."""

    messages: list[dict[str, str]]
    truncated: bool


def build_chat_prompt(
    source: ChatInput, *, max_prompt_tokens: int = 4096, counter: TokenCounter = _COUNTER
) -> ChatPrompt:
    """Return the messages for ``source``; raise ValueError for an unknown action or an empty selection."""
    system = ACTIONS.get(source.action)
    if system is None:
        raise ValueError(f"unknown chat action {source.action!r}; one of {', '.join(ACTIONS)}")
    if not 0 <= source.start <= source.end <= len(source.text):
        raise ValueError("the selection is outside the document")
    selection = source.text[source.start : source.end]
    if not selection.strip() and source.action != "ask":
        raise ValueError("the selection is empty: select the code first")
    fence = _fence(source.language_id)
    context_budget = int(max_prompt_tokens * _CONTEXT_SHARE)
    selection_budget = max_prompt_tokens - context_budget - counter.count(system)
    truncated = counter.count(selection) > selection_budget
    if truncated:
        selection = cut_to_tokens(selection, selection_budget, counter)
    parts = [f"File: {source.path}"]
    remaining = context_budget
    for title, body in _context_blocks(source):
        cost = counter.count(body) + 8
        if cost > remaining:
            continue
        remaining -= cost
        parts.append(f"{title}:\n```{fence}\n{body}\n```")
    if source.diagnostics:
        parts.append("Diagnostics:\n" + "\n".join(f"- {d}" for d in source.diagnostics))
    notice = (
        "\n(The selection was too long for the prompt: only its beginning is shown; change only that.)"
        if truncated
        else ""
    )
    parts.append(f"Selected code:\n```{fence}\n{selection}\n```{notice}")
    request = _request_line(source)
    if request:
        parts.append(request)
    return ChatPrompt(
        [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}], truncated
    )


def enclosing_definition(text: str, start: int, end: int, language_id: str) -> str | None:
    """Return the source of the smallest function or class that contains the selection, if it is larger."""
    info = language_info(language_id)
    if info is None:
        return None
    data = text.encode("utf-8", "surrogatepass")
    tree = parse(info.name, data)
    if tree is None:
        return None
    start_byte = len(text[:start].encode("utf-8", "surrogatepass"))
    end_byte = len(text[:end].encode("utf-8", "surrogatepass"))
    node = tree.root_node.named_descendant_for_byte_range(start_byte, max(start_byte, end_byte - 1))
    while node is not None:
        kind = node.type
        is_definition = any(word in kind for word in ("function", "method", "class", "impl", "struct"))
        if (
            is_definition
            and "call" not in kind
            and (node.start_byte < start_byte or node.end_byte > end_byte)
        ):
            return data[node.start_byte : node.end_byte].decode("utf-8", "replace")
        node = node.parent
    return None


def _context_blocks(source: ChatInput) -> list[tuple[str, str]]:
    blocks: list[tuple[str, str]] = []
    enclosing = enclosing_definition(source.text, source.start, source.end, source.language_id)
    if enclosing:
        blocks.append(("The selection is inside", enclosing))
    imports = import_section(source.text).strip()
    if imports:
        blocks.append(("Imports of the file", imports))
    for snippet in source.snippets:
        blocks.append((f"Related code from {snippet.path}", snippet.text))
    return blocks


def _request_line(source: ChatInput) -> str:
    if source.action == "refactor":
        return f"Refactor it: {source.instruction.strip() or 'make it clearer'}"
    if source.action == "ask":
        return f"Question: {source.instruction.strip()}"
    if source.action == "fix":
        return "Fix the problem the diagnostics describe."
    return {"explain": "Explain it.", "document": "Document it.", "tests": "Write tests for it."}.get(
        source.action, ""
    )


def _fence(language_id: str) -> str:
    info = language_info(language_id)
    return info.name if info is not None else ""
