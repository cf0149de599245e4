"""Turn CRLF line endings of the raw completion into LF, so the other filters see one kind of line break."""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import to_lf
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def normalize_line_endings(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Replace CRLF with LF in the completion (restore_line_endings puts the document's style back)."""
    text = to_lf(candidate.text)
    return candidate if text == candidate.text else replace(candidate, text=text)
