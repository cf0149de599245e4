from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.normalize_line_endings import normalize_line_endings
from cube_lsp.completion.postprocess.restore_line_endings import restore_line_endings
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def test_normalize_turns_crlf_into_lf() -> None:
    context = context_at("a\r\n║\r\n", multiline=True)
    assert normalize_line_endings(Candidate("x\r\ny", 1), context, CONFIG) == Candidate("x\ny", 1)


def test_restore_uses_crlf_in_crlf_documents() -> None:
    context = context_at("a\r\n║\r\nb\r\n", multiline=True)
    assert restore_line_endings(Candidate("x\ny"), context, CONFIG) == Candidate("x\r\ny")


def test_restore_detects_crlf_from_the_prefix_at_end_of_file() -> None:
    context = context_at("a\r\nb = ║", multiline=True)
    assert restore_line_endings(Candidate("x\ny"), context, CONFIG) == Candidate("x\r\ny")


def test_restore_keeps_lf_in_lf_documents() -> None:
    candidate = Candidate("x\ny")
    assert restore_line_endings(candidate, context_at("a\n║\n", multiline=True), CONFIG) is candidate
