"""Give the finished completion the line endings of the document (CRLF files get CRLF completions)."""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import to_lf, uses_crlf
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def restore_line_endings(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Write the completion's line breaks as CRLF when the document around the cursor uses CRLF."""
    if "\n" not in candidate.text or not uses_crlf(context):
        return candidate
    return replace(candidate, text=to_lf(candidate.text).replace("\n", "\r\n"))
