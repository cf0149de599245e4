"""Keep only the first line of the completion where a single-line completion is wanted."""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def limit_to_single_line(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cut the completion at its first line break unless multi-line; drop it if line one is blank."""
    if context.multiline:
        return candidate
    end = candidate.text.find("\n")
    if end < 0:
        return candidate
    first = candidate.text[:end].removesuffix("\r")
    if not first.strip():
        return None  # the model only wants to start a new line, which single-line mode cannot show
    return replace(candidate, text=first)
