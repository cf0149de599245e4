"""Golden cases for chat edit extraction and re-indentation: tests/golden/chat_edits/*.toml.

Each case has ``description``, ``language`` (the LSP language id), ``document`` with the selection
between the ``<<<`` and ``>>>`` markers, ``answer`` (the model's whole answer), optional ``crlf = true``
(the document and the expected text use CRLF line endings), and either ``expected`` (the whole document
after the edit is applied) or ``refused`` (a substring of the reason nothing is applied).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from cube_lsp.chat.edits import EditResult, apply_answer, canonical_language

START, END = "<<<", ">>>"
CASES = sorted((Path(__file__).parent.parent / "golden" / "chat_edits").glob("*.toml"))
LANGUAGES = ("python", "typescript", "go", "rust")


def split_selection(document: str) -> tuple[str, int, int]:
    """Remove the markers; return the document and the selection's str offsets."""
    for marker in (START, END):
        if document.count(marker) != 1:
            raise ValueError(f"the document must hold exactly one {marker} marker")
    start = document.index(START)
    end = document.index(END) - len(START)
    if end < start:
        raise ValueError(f"{START} must come before {END}")
    return document.replace(START, "").replace(END, ""), start, end


def run_case(case: dict[str, Any]) -> tuple[str, EditResult]:
    document = case["document"]
    if case.get("crlf", False):
        document = document.replace("\n", "\r\n")
    text, start, end = split_selection(document)
    return text, apply_answer(text, start, end, case["answer"], case["language"])


def load(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 32
    for language in LANGUAGES:
        count = sum(1 for path in CASES if canonical_language(load(path)["language"]) == language)
        assert count >= 8, language


@pytest.mark.parametrize("case_path", CASES, ids=[p.stem for p in CASES])
def test_golden(case_path: Path) -> None:
    case = load(case_path)
    assert case["description"]
    assert ("expected" in case) != ("refused" in case), "a case gives exactly one of expected and refused"
    text, result = run_case(case)
    if "refused" in case:
        assert result.edit is None
        assert result.reason is not None and case["refused"] in result.reason
        return
    assert result.reason is None, result.reason
    assert result.edit is not None
    edit = result.edit
    applied = text[: edit.start] + edit.new_text + text[edit.end :]
    expected = case["expected"].replace("\n", "\r\n") if case.get("crlf", False) else case["expected"]
    assert applied == expected
    # The edit is the smallest one: it shares no first or last character with the text it replaces.
    replaced = text[edit.start : edit.end]
    if replaced and edit.new_text:
        assert replaced[0] != edit.new_text[0] and replaced[-1] != edit.new_text[-1]
