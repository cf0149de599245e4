"""Remove the loops a model falls into: a line or block repeated over and over, or the line above again.

Greedy decoding of small models often repeats the last line (or the last few lines) until the token
budget runs out, and sometimes starts by rewriting the line just above the cursor. Blank lines are
ignored when counting repetitions: ``a``, blank, ``a``, blank, ``a`` is ``a`` three times.
"""

from __future__ import annotations

from dataclasses import replace

from cube_lsp.completion.postprocess._text import (
    has_word,
    indent_width,
    line_prefix,
    previous_nonblank_line,
    squash,
)
from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import Candidate, CursorContext


def _rewrites_line_above(lines: list[str], context: CursorContext, config: PostprocessConfig) -> bool:
    """Return whether the first non-blank line of the completion repeats the non-blank line above it."""
    cursor_line = line_prefix(context) + lines[0]
    if lines[0].strip():
        first, above = cursor_line, previous_nonblank_line(context, config)
    else:
        rest = [line for line in lines[1:] if line.strip()]
        if not rest:
            return False
        # The completion starts a new line: the line above it is the cursor line, unless that is blank.
        first = rest[0]
        above = cursor_line if cursor_line.strip() else previous_nonblank_line(context, config)
    if above is None or not has_word(first):
        return False
    same_indent = indent_width(first, config.tab_size) == indent_width(above, config.tab_size)
    return same_indent and squash(first) == squash(above)


def _first_repetition_end(lines: list[str], before: str, config: PostprocessConfig) -> int | None:
    """Return the index of the line after the first copy of a repeated block, or None without repetition."""
    # The first line is compared as it will read in the editor, after the text before the cursor.
    full = [before + lines[0], *lines[1:]]
    kept = [(index, line.rstrip()) for index, line in enumerate(full) if line.strip()]
    count = len(kept)
    threshold = max(config.repetition_threshold, 2)
    for start in range(count):
        for size in range(1, config.max_repeated_block_lines + 1):
            if start + size * threshold > count:
                break
            block = [line for _, line in kept[start : start + size]]
            copies = 1
            while [line for _, line in kept[start + copies * size : start + (copies + 1) * size]] == block:
                copies += 1
            if copies >= threshold:
                return kept[start + size - 1][0] + 1
    return None


def remove_repetitive_lines(
    candidate: Candidate, context: CursorContext, config: PostprocessConfig
) -> Candidate | None:
    """Cut a line or block repeated ``repetition_threshold`` times to one copy; drop a line-above copy."""
    lines = candidate.text.split("\n")
    if _rewrites_line_above(lines, context, config):
        return None
    end = _first_repetition_end(lines, line_prefix(context), config)
    if end is None:
        return candidate
    return replace(candidate, text="\n".join(lines[:end]))
