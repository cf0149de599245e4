from __future__ import annotations

import pytest

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.balance_brackets import balance_brackets
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, language: str = "python") -> Candidate | None:
    return balance_brackets(Candidate(text), context_at(marked, language, True), CONFIG)


@pytest.mark.parametrize(
    ("marked", "text", "replaced"),
    [
        ("foo(║)\n", "a, b)", 1),  # the closer already after the cursor
        ("foo(║);\n", "a, b);", 2),  # closer and separator
        ("foo(bar(║))\n", "x))", 2),  # nested closers
        ("foo(bar(║))\n", "x)", 1),  # only the inner one
        ("foo(║)\n", "a) + b", 1),  # closes the call, then continues
        ('print("║")\n', 'hi")', 2),  # the string's quote, then the paren
        ('s = "║"\n', 'abc"', 1),  # only the quote
        ("if x║:\n", " > 0:", 1),  # a separator the completion ends with
    ],
)
def test_rewritten_closers_are_covered_by_replace_suffix_chars(marked: str, text: str, replaced: int) -> None:
    assert run(marked, text) == Candidate(text, replaced)


def test_a_closer_of_the_completion_own_bracket_is_not_a_rewrite() -> None:
    assert run("foo(║)\n", "bar()") == Candidate("bar()")


def test_an_opening_quote_after_the_cursor_is_not_rewritten() -> None:
    assert run('f(║"x")\n', 'y, "') == Candidate('y, "')


def test_never_adds_closers() -> None:
    assert run("foo(║\n", "a, b") == Candidate("a, b")


def test_cuts_a_closer_the_code_below_already_has() -> None:
    assert run("int f() {\n    ║\n}\n", "return 1;\n}\nint g;", "c") == Candidate("return 1;")


def test_keeps_a_closer_nothing_below_closes() -> None:
    assert run("int f() {\n    ║", "return 1;\n}", "c") == Candidate("return 1;\n}")


def test_keeps_an_inner_closer_when_only_the_outer_one_is_below() -> None:
    marked = "int f() {\n    if (a) {║\n}\n"
    assert run(marked, "\n        b();\n    }", "c") == Candidate("\n        b();\n    }")


def test_drops_a_completion_that_is_only_a_duplicate_closer() -> None:
    assert run("int f() {\n    x();\n    ║\n}\n", "}", "c") is None


def test_brackets_in_strings_and_comments_are_ignored() -> None:
    text = 'puts(")"); // (\n'
    assert run("int f() {\n    ║\n}\n", text, "c") == Candidate(text)


def test_mismatched_closer_is_cut() -> None:
    assert run("let t = (║);\n", "1, 2]", "rust") == Candidate("1, 2")
