from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.remove_suffix_overlap import remove_suffix_overlap
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, language: str = "python") -> str | None:
    result = remove_suffix_overlap(Candidate(text), context_at(marked, language, True), CONFIG)
    return None if result is None else result.text


def test_trims_the_repeated_rest_of_the_line() -> None:
    assert run("x = f(║, 2)\n", "1, 2)") == "1"


def test_trims_a_partial_repeat_of_the_next_line() -> None:
    assert run("def f():\n    ║\n    return a + b\n", "a = 1\n    return a") == "a = 1"


def test_overlap_ignores_whitespace() -> None:
    assert run("def f():\n    ║\n    return   a+b\n", "a = 1\n\n    return a + b") == "a = 1"


def test_whole_overlap_drops_the_completion() -> None:
    assert run("def f():\n    ║\n\n    return a\n", "return a") is None


def test_line_overlap_must_sit_at_the_suffix_indentation() -> None:
    text = "if a:\n        return b"
    assert run("def f():\n    ║\n    return b\n", text) == text


def test_partial_token_is_not_an_overlap() -> None:
    assert run("x = ║counter\n", "count") == "count"


def test_only_punctuation_is_left_to_balance_brackets() -> None:
    assert run("f(║)\n", "a)") == "a)"


def test_trailing_closing_line_already_below_is_trimmed() -> None:
    assert run("int f() {\n    ║\n}\n", "return 1;\n}", "c") == "return 1;"


def test_closing_line_of_an_own_block_is_kept() -> None:
    text = "if (a) {\n    b();\n}"
    assert run("if (x) {\n║\n}\n", text, "c") == text


def test_no_suffix_no_change() -> None:
    candidate = Candidate("return 1")
    context = context_at("def f():\n    ║", multiline=True)
    assert remove_suffix_overlap(candidate, context, CONFIG) is candidate
