"""Post-processing of raw model output into a completion worth showing.

The engine calls :func:`postprocess` with the model text (the whole stream, or a part of it) and the
cursor context. Each step is a pure filter in its own module with the signature
``(candidate, context, config) -> Candidate | None``, where None drops the completion. The order below
is the only place the pipeline is declared. Filters only read bounded windows of the document around
the cursor, so the cost does not depend on the size of the file.
"""

from __future__ import annotations

from collections.abc import Callable

from cube_lsp.completion.postprocess.balance_brackets import balance_brackets
from cube_lsp.completion.postprocess.config import DEFAULT_STOP_TOKENS, PostprocessConfig
from cube_lsp.completion.postprocess.limit_scope_by_indentation import limit_scope_by_indentation
from cube_lsp.completion.postprocess.limit_to_single_line import limit_to_single_line
from cube_lsp.completion.postprocess.normalize_line_endings import normalize_line_endings
from cube_lsp.completion.postprocess.remove_repetitive_lines import remove_repetitive_lines
from cube_lsp.completion.postprocess.remove_suffix_overlap import remove_suffix_overlap
from cube_lsp.completion.postprocess.restore_line_endings import restore_line_endings
from cube_lsp.completion.postprocess.stop_at_suffix_start import stop_at_suffix_start
from cube_lsp.completion.postprocess.strip_artefacts import strip_artefacts
from cube_lsp.completion.postprocess.trim_space import trim_space
from cube_lsp.completion.types import Candidate, CursorContext

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_STOP_TOKENS",
    "PIPELINE",
    "Filter",
    "PostprocessConfig",
    "postprocess",
]

Filter = Callable[[Candidate, CursorContext, PostprocessConfig], "Candidate | None"]

DEFAULT_CONFIG = PostprocessConfig()

PIPELINE: tuple[Filter, ...] = (
    normalize_line_endings,  # CRLF -> LF, so filters see one kind of line break
    strip_artefacts,  # stop tokens, <think> blocks, markdown fences
    limit_to_single_line,  # first line only when context.multiline is False
    remove_repetitive_lines,  # loops of lines or blocks; a rewrite of the line above
    limit_scope_by_indentation,  # stop when the completion leaves the cursor's block
    stop_at_suffix_start,  # stop where the code after the cursor begins
    remove_suffix_overlap,  # trim a tail that repeats the head of the suffix
    balance_brackets,  # replace closers already on the line; cut closers the suffix has
    trim_space,  # trailing whitespace; drop blank completions and copies of the line suffix
    restore_line_endings,  # LF -> CRLF in CRLF documents
)


def postprocess(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig = DEFAULT_CONFIG
) -> Candidate | None:
    """Run the candidate through every filter of :data:`PIPELINE`; None means the completion is dropped."""
    current: Candidate | None = candidate
    for step in PIPELINE:
        current = step(current, context, config)
        if current is None:
            return None
    return current
