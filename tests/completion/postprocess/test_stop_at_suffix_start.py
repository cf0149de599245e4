from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.stop_at_suffix_start import stop_at_suffix_start
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, language: str = "python", config: PostprocessConfig = CONFIG) -> str | None:
    result = stop_at_suffix_start(Candidate(text), context_at(marked, language, True), config)
    return None if result is None else result.text


def test_cuts_at_the_next_line() -> None:
    assert run("def f():\n    ║\n    return x\n", "x = 1\n    return x\n    pass") == "x = 1"


def test_the_next_line_must_have_the_same_indentation() -> None:
    text = "if a:\n        return x\n    x = 2"
    assert run("def f():\n    ║\n    return x\n", text) == text


def test_whitespace_inside_lines_is_ignored() -> None:
    assert run("def f():\n    ║\n    return x+1\n", "y = 0\n    return x + 1") == "y = 0"


def test_short_lines_are_joined_with_the_next_ones() -> None:
    marked = "function f() {\n  ║\n}\n\nfunction g() {}\n"
    text = "if (a) {\n    b();\n  }\n}\n\nfunction g() {}"
    assert run(marked, text, "javascript") == "if (a) {\n    b();\n  }"


def test_a_lone_closer_below_is_not_an_anchor() -> None:
    marked = "function f() {\n  ║\n}\n" + "\n" * 3
    text = "a();\n}"
    assert run(marked, text, "javascript") == text


def test_anchor_length_is_configurable() -> None:
    config = PostprocessConfig(anchor_min_chars=1)
    marked = "function f() {\n  ║\n}\nfoo();\n"
    assert run(marked, "a();\n}\nbar();", "javascript", config) == "a();"


def test_cuts_at_the_rest_of_the_cursor_line() -> None:
    assert run("x = f(║, y)\n", "a, y)  # done") == "a"


def test_the_rest_of_the_line_must_match_whole_tokens() -> None:
    assert run("x = ║b\n", "abc + 1") == "abc + 1"
    assert run("x = ║b\n", "a + b") == "a + "


def test_drops_a_completion_that_starts_with_the_suffix() -> None:
    assert run("def f():\n    ║\n    return x\n", "return x") is None


def test_only_closers_after_the_cursor_are_left_to_balance_brackets() -> None:
    assert run("f(║)\n", "a) + 1") == "a) + 1"
