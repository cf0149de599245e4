"""Tidy the whitespace at the ends of the completion and drop completions that add nothing.

Trailing whitespace is removed, except spaces before text that stays on the cursor line (``a, ``
before ``b)``). A leading space is removed when the cursor already follows one. A completion that is
empty, only whitespace, or the text already after the cursor is dropped.
"""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import line_prefix, line_suffix
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def trim_space(candidate: Candidate, context: CursorContext, config: PostprocessConfig) -> Candidate | None:
    """Trim trailing (and doubled leading) whitespace; drop blank completions and line-suffix copies."""
    text = candidate.text
    if not text.strip():
        return None
    rest = line_suffix(context)[candidate.replace_suffix_chars :]
    trimmed = text.rstrip()
    tail = text[len(trimmed) :]
    if rest.strip() and not rest[0].isspace() and "\n" not in tail:
        trimmed = text  # the space separates the completion from the text after the cursor
    before = line_prefix(context)
    if before.strip() and before[-1] in " \t":
        trimmed = trimmed.lstrip(" \t")
    if candidate.replace_suffix_chars == 0 and trimmed.strip() == line_suffix(context).strip():
        return None
    return candidate if trimmed == candidate.text else replace(candidate, text=trimmed)
