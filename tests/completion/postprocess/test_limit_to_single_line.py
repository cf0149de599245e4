from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.limit_to_single_line import limit_to_single_line
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def test_cuts_at_the_first_newline_in_single_line_mode() -> None:
    context = context_at("x = ║\n", multiline=False)
    assert limit_to_single_line(Candidate("1\ny = 2"), context, CONFIG) == Candidate("1")


def test_cuts_at_crlf() -> None:
    context = context_at("x = ║\r\n", multiline=False)
    assert limit_to_single_line(Candidate("1\r\ny = 2"), context, CONFIG) == Candidate("1")


def test_leaves_multi_line_mode_alone() -> None:
    context = context_at("def f():\n    ║\n", multiline=True)
    candidate = Candidate("a = 1\n    return a")
    assert limit_to_single_line(candidate, context, CONFIG) is candidate


def test_drops_a_completion_whose_first_line_is_blank() -> None:
    context = context_at("x = 1║\n", multiline=False)
    assert limit_to_single_line(Candidate("  \ny = 2"), context, CONFIG) is None


def test_keeps_replace_suffix_chars() -> None:
    context = context_at("f(║)\n", multiline=False)
    assert limit_to_single_line(Candidate("a)\nb", 1), context, CONFIG) == Candidate("a)", 1)
