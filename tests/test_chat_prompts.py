"""Chat prompts for code actions (cube_lsp/chat/prompts.py): what the model is told, within a budget."""

from __future__ import annotations

import pytest

from cube_lsp.chat.prompts import ACTIONS, ChatInput, build_chat_prompt, enclosing_definition
from cube_lsp.completion.types import Snippet

DOCUMENT = '''import os
from pathlib import Path


class Store:
    """Keeps files."""

    def save(self, name, data):
        path = Path(self.root) / name
        path.write_bytes(data)
        return path
'''
SELECTION = "        path.write_bytes(data)\n"


def chat_input(action: str, **extra: object) -> ChatInput:
    start = DOCUMENT.index(SELECTION)
    return ChatInput(action, "store.py", "python", DOCUMENT, start, start + len(SELECTION), **extra)  # type: ignore[arg-type]


def test_every_action_has_a_system_prompt_and_code_actions_ask_for_one_block() -> None:
    assert set(ACTIONS) == {"explain", "document", "refactor", "tests", "fix", "ask"}
    for action in ("document", "refactor", "fix"):
        assert "one fenced code block" in ACTIONS[action]


def test_the_prompt_holds_selection_enclosing_function_imports_and_the_request() -> None:
    prompt = build_chat_prompt(chat_input("refactor", instruction="use pathlib only"))
    system, user = prompt.messages
    assert system == {"role": "system", "content": ACTIONS["refactor"]}
    body = user["content"]
    assert "Selected code:\n```python\n        path.write_bytes(data)\n" in body
    assert "The selection is inside:\n```python\ndef save(self, name, data):" in body
    assert "Imports of the file:\n```python\nimport os\nfrom pathlib import Path" in body
    assert body.endswith("Refactor it: use pathlib only")
    assert not prompt.truncated


def test_diagnostics_and_snippets_go_in_and_unknown_actions_or_empty_selections_do_not() -> None:
    snippet = Snippet("util.py", "def helper():\n    return 1", 0.9, "definition")
    body = build_chat_prompt(
        chat_input("fix", diagnostics=["line 10: error: x"], snippets=[snippet])
    ).messages[1]
    assert "Diagnostics:\n- line 10: error: x" in body["content"]
    assert "Related code from util.py:\n```python\ndef helper():" in body["content"]
    with pytest.raises(ValueError, match="unknown chat action"):
        build_chat_prompt(chat_input("delete-everything"))
    with pytest.raises(ValueError, match="selection is empty"):
        build_chat_prompt(ChatInput("document", "a.py", "python", "x = 1\n\n", 6, 7))


def test_a_ten_thousand_line_selection_is_cut_to_the_budget_with_a_notice() -> None:
    text = "".join(f"value_{i} = compute({i})\n" for i in range(10_000))
    prompt = build_chat_prompt(
        ChatInput("document", "big.py", "python", text, 0, len(text)), max_prompt_tokens=2048
    )
    assert prompt.truncated
    body = prompt.messages[1]["content"]
    assert "only its beginning is shown" in body
    assert len(body) / 3.5 < 2048  # within the budget (the char-ratio counter's estimate)


def test_enclosing_definition_is_the_smallest_that_is_larger_than_the_selection() -> None:
    start = DOCUMENT.index(SELECTION)
    found = enclosing_definition(DOCUMENT, start, start + len(SELECTION), "python")
    assert found is not None and found.startswith("def save") and found.rstrip().endswith("return path")
    method = DOCUMENT.index("    def save")
    whole = enclosing_definition(DOCUMENT, method + 4, len(DOCUMENT), "python")
    assert whole is not None and whole.startswith("class Store")
    assert enclosing_definition("x = 1\n", 0, 5, "python") is None
    assert enclosing_definition("plain text", 0, 5, "plaintext") is None


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 15, (0, 15)),  # already whole lines
        (0, 16, (0, 32)),  # Neovim's line selection ends one character into the next line
        (4, 10, (0, 15)),  # inside one line
        (20, 20, (15, 32)),  # the cursor: its line
        (32, 32, (32, 32)),  # the end of the document
    ],
)
def test_selections_are_widened_to_whole_lines(start: int, end: int, expected: tuple[int, int]) -> None:
    from cube_lsp.chat.engine import whole_lines

    text = "def add(a, b):\n    return a + b\n"
    assert whole_lines(text, start, end) == expected


def test_an_answer_for_a_selection_ending_mid_line_replaces_that_whole_line() -> None:
    """Found by Neovim: its line range ends one character into the next line; nothing is duplicated."""
    from cube_lsp.chat.edits import apply_answer

    document = "def add(a, b):\n    return a + b\n"
    answer = '```python\ndef add(a, b):\n    """Add two numbers."""\n    return a + b\n```'
    for end in (16, 19, 25):
        edit = apply_answer(document, 0, end, answer, "python").edit
        assert edit is not None
        result = document[: edit.start] + edit.new_text + document[edit.end :]
        assert result == 'def add(a, b):\n    """Add two numbers."""\n    return a + b\n', (end, result)
