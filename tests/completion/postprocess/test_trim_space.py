from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.trim_space import trim_space
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, replaced: int = 0) -> Candidate | None:
    return trim_space(Candidate(text, replaced), context_at(marked, multiline=True), CONFIG)


def test_drops_empty_and_whitespace_only() -> None:
    assert run("x = ║\n", "") is None
    assert run("x = ║\n", " \n\t\n") is None


def test_trims_trailing_whitespace_and_newlines() -> None:
    assert run("x = ║\n", "1  \n\n") == Candidate("1")


def test_keeps_a_space_before_text_on_the_cursor_line() -> None:
    assert run("x = ║+ 1\n", "a ") == Candidate("a ")


def test_drops_a_newline_before_text_on_the_cursor_line() -> None:
    assert run("f(║)\n", "a\n") == Candidate("a")


def test_removes_a_doubled_leading_space() -> None:
    assert run("x = ║\n", "  1") == Candidate("1")


def test_keeps_leading_indentation_on_a_blank_line() -> None:
    assert run("def f():\n║\n", "    pass") == Candidate("    pass")


def test_drops_a_copy_of_the_line_suffix() -> None:
    assert run("x = ║foo()\n", "foo()") is None


def test_a_copy_of_the_replaced_suffix_is_kept() -> None:
    assert run("f(║)\n", ")", replaced=1) == Candidate(")", 1)
