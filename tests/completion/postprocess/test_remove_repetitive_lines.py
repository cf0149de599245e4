from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.remove_repetitive_lines import remove_repetitive_lines
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, config: PostprocessConfig = CONFIG) -> str | None:
    result = remove_repetitive_lines(Candidate(text), context_at(marked, multiline=True), config)
    return None if result is None else result.text


def test_cuts_a_line_repeated_three_times() -> None:
    assert run("def f():\n    ║\n", "a()\n    a()\n    a()") == "a()"


def test_keeps_a_line_repeated_twice() -> None:
    assert run("def f():\n    ║\n", "a()\n    a()") == "a()\n    a()"


def test_threshold_is_configurable() -> None:
    config = PostprocessConfig(repetition_threshold=2)
    assert run("def f():\n    ║\n", "a()\n    a()", config) == "a()"


def test_cuts_a_repeated_block_after_useful_lines() -> None:
    text = "x = 0\n    a()\n    b()\n    a()\n    b()\n    a()\n    b()\n    a()"
    assert run("def f():\n    ║\n", text) == "x = 0\n    a()\n    b()"


def test_blocks_longer_than_the_limit_are_not_checked() -> None:
    config = PostprocessConfig(max_repeated_block_lines=1)
    text = "a()\n    b()\n    a()\n    b()\n    a()\n    b()"
    assert run("def f():\n    ║\n", text, config) == text


def test_same_text_at_different_indentation_is_not_a_repetition() -> None:
    text = "}\n  }\n}"
    assert run("f() {\n    ║\n", text) == text


def test_drops_a_rewrite_of_the_line_above() -> None:
    assert run("total = a + b\n║\n", "total = a + b") is None


def test_drops_a_rewrite_of_the_line_above_modulo_whitespace() -> None:
    assert run("total = a + b\n\n║\n", "total = a+b") is None


def test_drops_a_new_line_repeating_the_cursor_line() -> None:
    assert run("    go(x)║\n", "\n    go(x)") is None


def test_does_not_drop_a_repeated_closer() -> None:
    assert run("  }\n}\n║", "}") == "}"
